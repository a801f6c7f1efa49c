package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/llm/sse"
)

// maxResponseBody bounds a non-streamed provider response.
const maxResponseBody = 32 << 20

// PostJSON sends payload as a JSON POST to url for a provider client: the
// header function adds the provider's own headers (authentication,
// version), and Accept asks for an SSE stream when stream is set. A
// transport failure is returned as an *Error of the provider; any HTTP
// answer, successful or not, is returned for the client to read or map,
// and the caller closes its body.
func PostJSON(ctx context.Context, hc *http.Client, provider, url string, payload any, stream bool, header func(http.Header)) (*http.Response, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, &Error{Provider: provider, Kind: KindBadRequest, Err: err}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Provider: provider, Kind: KindBadRequest, Err: err}
	}
	hr.Header.Set("Content-Type", "application/json")
	if stream {
		hr.Header.Set("Accept", "text/event-stream")
	} else {
		hr.Header.Set("Accept", "application/json")
	}
	if header != nil {
		header(hr.Header)
	}
	res, err := hc.Do(hr)
	if err != nil {
		return nil, AsError(provider, err)
	}
	return res, nil
}

// DecodeResponse decodes a successful non-streamed response body into v;
// a body that is not the expected JSON is the provider being unavailable.
func DecodeResponse(provider string, res *http.Response, v any) error {
	if err := json.NewDecoder(io.LimitReader(res.Body, maxResponseBody)).Decode(v); err != nil {
		return &Error{Provider: provider, Kind: KindUnavailable, Status: res.StatusCode, Message: "malformed response", Err: err}
	}
	return nil
}

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// Conn is what the provider clients share, embedded in each: the
// provider's name, the base URL without a trailing slash, the HTTP client
// and the clock.
type Conn struct {
	Provider string
	BaseURL  string
	HC       *http.Client
	Now      func() time.Time
}

// NewConn returns the Conn of provider on baseURL (defaultURL when empty)
// through hc (when nil, a pooled client of its own: NewPool's defaults).
func NewConn(provider, baseURL, defaultURL string, hc *http.Client) Conn {
	if baseURL == "" {
		baseURL = defaultURL
	}
	if hc == nil {
		hc = NewPool(PoolConfig{}).Client
	}
	return Conn{Provider: provider, BaseURL: strings.TrimRight(baseURL, "/"), HC: hc, Now: time.Now}
}

// Name returns the provider's name.
func (c *Conn) Name() string { return c.Provider }

// HTTPError maps a provider's non-2xx answer onto an *Error: the kind from
// the status (and kind, when non-zero, overriding it), the Retry-After
// delay for retryable kinds, and the provider's error type and message as
// parse reads them from the body (at most 64 KiB), else the body's first
// 200 bytes. parse may adjust the error further (e.g. a quota 429 that no
// retry fixes).
func HTTPError(provider string, res *http.Response, now time.Time, parse func(body []byte, e *Error) bool) *Error {
	e := &Error{Provider: provider, Status: res.StatusCode, Kind: KindForStatus(res.StatusCode)}
	if res.StatusCode == 529 { // overloaded
		e.Kind = KindUnavailable
	}
	if e.Kind == KindRateLimited || e.Kind == KindUnavailable {
		e.RetryAfter = ParseRetryAfter(res.Header, now)
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	if parse == nil || !parse(b, e) {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	return e
}

// StreamBroken is the error of a stream that could not be read further:
// the caller's cancellation when ctx is done, else a broken stream (an EOF
// before the stream's end, named by end, is unexpected).
func StreamBroken(ctx context.Context, provider, end string, err error) *Error {
	if ctx.Err() != nil {
		return &Error{Provider: provider, Kind: KindCanceled, Err: ctx.Err()}
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &Error{Provider: provider, Kind: KindStream, Message: "stream ended before " + end, Err: err}
}

// Stream is the state of a streamed response being read by ReadStream.
type Stream struct {
	// Response collects what the events report; its Text is set from the
	// deltas when the stream ends.
	Response
	provider string
	text     strings.Builder
	onDelta  DeltaFunc
}

// Delta adds text to the response and passes it to the caller's DeltaFunc,
// whose error, if any, it returns as an *Error of the provider.
func (s *Stream) Delta(text string) error {
	s.text.WriteString(text)
	if err := s.onDelta(text); err != nil {
		return AsError(s.provider, err)
	}
	return nil
}

// ReadStream reads a provider's SSE body, handing every event to handle
// until handle reports the stream's end event (named by end) or fails. A
// body that breaks or ends before that fails the call (StreamBroken).
func ReadStream(ctx context.Context, provider, end string, body io.Reader, onDelta DeltaFunc, handle func(ev sse.Event, s *Stream) (done bool, err error)) (*Response, error) {
	s := &Stream{provider: provider, onDelta: onDelta}
	dec := sse.NewDecoder(body)
	for {
		ev, err := dec.Next()
		if err != nil {
			return nil, StreamBroken(ctx, provider, end, err)
		}
		done, err := handle(ev, s)
		if err != nil {
			return nil, err
		}
		if done {
			s.Response.Text = s.text.String()
			return &s.Response, nil
		}
	}
}

// Exchange is one call of a provider client: it posts payload to url
// (PostJSON) and hands the answer back to the client: a non-2xx answer to
// httpError, a stream (onDelta set) to readStream, a JSON body decoded
// into a T to done with the HTTP status.
func Exchange[T any](ctx context.Context, hc *http.Client, provider, url string, payload any, header func(http.Header), onDelta DeltaFunc,
	httpError func(*http.Response) error, readStream func(io.Reader) (*Response, error), done func(r *T, status int) (*Response, error)) (*Response, error) {
	res, err := PostJSON(ctx, hc, provider, url, payload, onDelta != nil, header)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if ok {
			closeBody(res.Body)
		} else {
			res.Body.Close()
		}
	}()
	if res.StatusCode/100 != 2 {
		ok = true // read to its end (up to 64 KiB) by httpError
		return nil, httpError(res)
	}
	var out *Response
	if onDelta != nil {
		out, err = readStream(res.Body)
	} else {
		var r T
		if err = DecodeResponse(provider, res, &r); err == nil {
			out, err = done(&r, res.StatusCode)
		}
	}
	ok = err == nil
	return out, err
}

// maxDrain bounds what is read of a body left unread before it is
// closed.
const maxDrain = 64 << 10

// drainWait bounds the wait for the rest of a body in closeBody.
const drainWait = 100 * time.Millisecond

// closeBody reads what is left of a response that was read successfully
// (a stream's end after its last event, an error body past what was
// read), up to maxDrain and for at most drainWait, then closes it: a body
// closed before its end costs its connection, which the pool then cannot
// reuse. A failed exchange's body is closed at once instead.
func closeBody(b io.ReadCloser) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.CopyN(io.Discard, b, maxDrain)
	}()
	t := time.NewTimer(drainWait)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	_ = b.Close() // ends a read still in progress
}

// WireMessage is a chat message as both providers' JSON has it.
type WireMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}
