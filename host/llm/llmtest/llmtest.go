// Package llmtest holds what the provider clients' tests share: a fake
// provider server that records every call, the table of error cases
// every client must map onto the llm package's kinds, and the check of
// a fuzzed stream.
package llmtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/llm"
)

// Call is one request the fake server received.
type Call struct {
	Method, Path string
	Header       http.Header
	Body         map[string]any
}

// Server starts a fake provider that records each call (failing the
// test when a request body is not JSON) and answers it with handler,
// given the call's number from 1. It is closed when the test ends.
func Server(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, n int)) (*httptest.Server, *[]Call) {
	t.Helper()
	var calls []Call
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("request body is not JSON: %v", err)
		}
		calls = append(calls, Call{r.Method, r.URL.Path, r.Header.Clone(), body})
		handler(w, r, int(n.Add(1)))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// Ask is a one-message request to model.
func Ask(model string) *llm.Request {
	return &llm.Request{Model: model, Messages: []llm.Message{{Role: llm.RoleUser, Content: "x"}}}
}

// ErrorCase is one answer of a provider, with the *llm.Error a client
// must turn it into.
type ErrorCase struct {
	Name   string
	Status int
	Header map[string]string
	Body   string
	// Stream asks for a streamed response.
	Stream     bool
	WantKind   error
	WantType   string
	WantStatus int
	WantAfter  time.Duration
	// WantDeltas is how many deltas reach the caller before the failure.
	WantDeltas int
}

// RunErrorCases serves each case from a fake server and checks the error
// of one call through the client newClient returns for the server's URL.
func RunErrorCases(t *testing.T, cases []ErrorCase, newClient func(baseURL string) llm.Provider) {
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			srv, _ := Server(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				for k, v := range tt.Header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.Status)
				io.WriteString(w, tt.Body)
			})
			var onDelta llm.DeltaFunc
			deltas := 0
			if tt.Stream {
				onDelta = func(string) error { deltas++; return nil }
			}
			_, err := newClient(srv.URL).Complete(context.Background(), Ask("m"), onDelta)
			if !errors.Is(err, tt.WantKind) {
				t.Fatalf("err = %v, want %v", err, tt.WantKind)
			}
			var e *llm.Error
			if !errors.As(err, &e) {
				t.Fatalf("err %T is not *llm.Error", err)
			}
			if e.Type != tt.WantType || e.Status != tt.WantStatus || e.RetryAfter != tt.WantAfter {
				t.Errorf("error = type %q status %d retry-after %v, want %q %d %v", e.Type, e.Status, e.RetryAfter, tt.WantType, tt.WantStatus, tt.WantAfter)
			}
			if deltas != tt.WantDeltas {
				t.Errorf("deltas = %d, want %d", deltas, tt.WantDeltas)
			}
		})
	}
}

// CheckStream reads a (fuzzed) stream body with read: it must fail with
// an *llm.Error, or succeed with the text of the deltas it passed on.
func CheckStream(t *testing.T, body string, read func(ctx context.Context, body io.Reader, onDelta llm.DeltaFunc) (*llm.Response, error)) {
	var text strings.Builder
	resp, err := read(context.Background(), strings.NewReader(body), func(s string) error { text.WriteString(s); return nil })
	if err != nil {
		var e *llm.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T is not *llm.Error", err)
		}
		return
	}
	if resp.Text != text.String() {
		t.Fatalf("text %q differs from deltas %q", resp.Text, text.String())
	}
}

// CheckRequest checks that the fake server saw exactly one call, a POST
// to path with the given headers and JSON body, and returns it.
func CheckRequest(t *testing.T, calls []Call, path string, header map[string]string, body map[string]any) Call {
	t.Helper()
	if len(calls) != 1 {
		t.Fatalf("calls = %d, want 1", len(calls))
	}
	got := calls[0]
	if got.Method != http.MethodPost || got.Path != path {
		t.Errorf("request line = %s %s, want POST %s", got.Method, got.Path, path)
	}
	for k, want := range header {
		if v := got.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if !reflect.DeepEqual(got.Body, body) {
		t.Errorf("body = %#v\nwant %#v", got.Body, body)
	}
	return got
}
