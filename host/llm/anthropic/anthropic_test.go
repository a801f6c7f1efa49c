package anthropic

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/llmtest"
)

// messageJSON is a Messages API response as documented by Anthropic.
const messageJSON = `{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "content": [{"type": "text", "text": "Hi! "}, {"type": "text", "text": "How can I help?"}],
  "model": "claude-haiku-4-5-20251001",
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 120, "cache_read_input_tokens": 1800}
}`

// streamBody is a streamed message as Anthropic sends it.
const streamBody = "event: message_start\n" +
	`data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":2}}}` + "\n\n" +
	"event: content_block_start\n" +
	`data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
	"event: ping\n" +
	`data: {"type": "ping"}` + "\n\n" +
	"event: content_block_delta\n" +
	`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}` + "\r\n\r\n" +
	"event: content_block_delta\n" +
	`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", world"}}` + "\n\n" +
	": a comment line\n" +
	"event: content_block_delta\n" +
	`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}` + "\n\n" +
	"event: content_block_stop\n" +
	`data: {"type":"content_block_stop","index":0}` + "\n\n" +
	"event: message_delta\n" +
	`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}` + "\n\n" +
	"event: message_stop\n" +
	`data: {"type":"message_stop"}` + "\n\n"

func temp(f float64) *float64 { return &f }

func TestCompleteRequestShapeAndUsage(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("content-type", "application/json")
		io.WriteString(w, messageJSON)
	})
	c := New(Config{APIKey: "sk-ant-test", BaseURL: srv.URL + "/"})
	resp, err := c.Complete(context.Background(), &llm.Request{
		Model:  "claude-haiku-4-5",
		System: "You are a coach.",
		Messages: []llm.Message{
			{Role: llm.RoleSystem, Content: "Summary: likes hiking."},
			{Role: llm.RoleUser, Content: "hi"},
			{Role: llm.RoleUser, Content: "are you there?"},
			{Role: llm.RoleAssistant, Content: "Yes."},
			{Role: llm.RoleUser, Content: "great"},
		},
		MaxTokens:   300,
		Temperature: temp(0.5),
		User:        "42",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]any{
		"model":       "claude-haiku-4-5",
		"max_tokens":  float64(300),
		"system":      "You are a coach.\n\nSummary: likes hiking.",
		"temperature": 0.5,
		"metadata":    map[string]any{"user_id": "42"},
		"messages": []any{
			map[string]any{"role": "user", "content": "hi\n\nare you there?"},
			map[string]any{"role": "assistant", "content": "Yes."},
			map[string]any{"role": "user", "content": "great"},
		},
	}
	llmtest.CheckRequest(t, *calls, "/v1/messages", map[string]string{"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}, wantBody)
	want := &llm.Response{ID: "msg_01XFDUDYJgAACzvnptvVoYEL", Model: "claude-haiku-4-5-20251001", Text: "Hi! How can I help?",
		StopReason: "end_turn", Usage: llm.Usage{InputTokens: 2095, OutputTokens: 503, CacheWriteTokens: 120, CacheReadTokens: 1800}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("resp = %+v, want %+v", resp, want)
	}
}

func TestStreamReassembly(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("content-type", "text/event-stream")
		// Send in small pieces so events straddle reads.
		for i := 0; i < len(streamBody); i += 17 {
			io.WriteString(w, streamBody[i:min(i+17, len(streamBody))])
			w.(http.Flusher).Flush()
		}
	})
	c := New(Config{APIKey: "k", BaseURL: srv.URL})
	var deltas []string
	resp, err := c.Complete(context.Background(), &llm.Request{Model: "claude-sonnet-4-5", Messages: []llm.Message{{Role: "user", Content: "hi"}}},
		func(s string) error { deltas = append(deltas, s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if (*calls)[0].Body["stream"] != true {
		t.Errorf("stream flag not sent: %v", (*calls)[0].Body)
	}
	if (*calls)[0].Body["max_tokens"] != float64(1024) {
		t.Errorf("default max_tokens not sent: %v", (*calls)[0].Body["max_tokens"])
	}
	if want := []string{"Hello", ", world", "!"}; !reflect.DeepEqual(deltas, want) {
		t.Errorf("deltas = %q, want %q", deltas, want)
	}
	want := &llm.Response{ID: "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", Model: "claude-sonnet-4-5-20250929", Text: "Hello, world!",
		StopReason: "end_turn", Usage: llm.Usage{InputTokens: 472, OutputTokens: 15, CacheReadTokens: 2048}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("resp = %+v, want %+v", resp, want)
	}
}

func errorBody(typ, msg string) string {
	return `{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"}}`
}

func TestErrorMapping(t *testing.T) {
	cut := streamBody[:strings.Index(streamBody, "event: content_block_stop")]
	tests := []llmtest.ErrorCase{
		{Name: "429 retry-after", Status: 429, Header: map[string]string{"retry-after": "7"},
			Body:     errorBody("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
			WantKind: llm.ErrRateLimited, WantType: "rate_limit_error", WantStatus: 429, WantAfter: 7 * time.Second},
		{Name: "529 overloaded", Status: 529, Body: errorBody("overloaded_error", "Overloaded"),
			WantKind: llm.ErrUnavailable, WantType: "overloaded_error", WantStatus: 529},
		{Name: "500 api error", Status: 500, Body: errorBody("api_error", "Internal server error"),
			WantKind: llm.ErrUnavailable, WantType: "api_error", WantStatus: 500},
		{Name: "502 html", Status: 502, Body: "<html>bad gateway</html>", WantKind: llm.ErrUnavailable, WantStatus: 502},
		{Name: "400 invalid", Status: 400, Body: errorBody("invalid_request_error", "max_tokens: Field required"),
			WantKind: llm.ErrBadRequest, WantType: "invalid_request_error", WantStatus: 400},
		{Name: "401 auth", Status: 401, Body: errorBody("authentication_error", "invalid x-api-key"),
			WantKind: llm.ErrAuth, WantType: "authentication_error", WantStatus: 401},
		{Name: "stream breaks", Status: 200, Stream: true, Body: cut, WantKind: llm.ErrStream, WantDeltas: 3},
		{Name: "stream cut mid-line", Status: 200, Stream: true, Body: streamBody[:strings.Index(streamBody, `", world`)], WantKind: llm.ErrStream, WantDeltas: 1},
		{Name: "stream error event", Status: 200, Stream: true,
			Body:     streamBody[:strings.Index(streamBody, "event: ping")] + "event: error\ndata: " + errorBody("overloaded_error", "Overloaded") + "\n\n",
			WantKind: llm.ErrUnavailable, WantType: "overloaded_error"},
		{Name: "stream malformed json", Status: 200, Stream: true, Body: "event: message_start\ndata: {not json\n\n", WantKind: llm.ErrStream},
	}
	llmtest.RunErrorCases(t, tests, func(url string) llm.Provider { return New(Config{APIKey: "k", BaseURL: url}) })
}

func TestRetryHonoursRetryAfterThenSucceeds(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			w.Header().Set("retry-after", "2")
			w.WriteHeader(429)
			io.WriteString(w, errorBody("rate_limit_error", "slow down"))
		case 2:
			w.WriteHeader(503)
			io.WriteString(w, errorBody("api_error", "unavailable"))
		default:
			w.Header().Set("content-type", "text/event-stream")
			io.WriteString(w, streamBody)
		}
	})
	var waits []time.Duration
	r := llm.NewRetrying(New(Config{APIKey: "k", BaseURL: srv.URL}), llm.RetryConfig{Attempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: 10 * time.Second}, nil).
		WithSleep(func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil })
	var text strings.Builder
	resp, err := r.Complete(context.Background(), &llm.Request{Model: "m", Messages: []llm.Message{{Role: "user", Content: "x"}}},
		func(s string) error { text.WriteString(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(*calls) != 3 {
		t.Errorf("calls = %d, want 3", len(*calls))
	}
	if len(waits) != 2 || waits[0] != 2*time.Second || waits[1] < 100*time.Millisecond || waits[1] > 200*time.Millisecond {
		t.Errorf("waits = %v, want [2s, 100-200ms backoff]", waits)
	}
	if text.String() != "Hello, world!" || resp.Text != "Hello, world!" {
		t.Errorf("text = %q / %q", text.String(), resp.Text)
	}
}

func TestRetryGivesUp(t *testing.T) {
	tests := []struct {
		name      string
		handler   func(w http.ResponseWriter, n int)
		wantCalls int
		wantErr   error
	}{
		{"5xx every time", func(w http.ResponseWriter, _ int) { w.WriteHeader(500) }, 3, llm.ErrUnavailable},
		{"bad request not retried", func(w http.ResponseWriter, _ int) {
			w.WriteHeader(400)
			io.WriteString(w, errorBody("invalid_request_error", "bad"))
		}, 1, llm.ErrBadRequest},
		{"retry-after too long", func(w http.ResponseWriter, _ int) {
			w.Header().Set("retry-after", "3600")
			w.WriteHeader(429)
		}, 1, llm.ErrRateLimited},
		{"stream broken after text not retried", func(w http.ResponseWriter, _ int) {
			io.WriteString(w, streamBody[:strings.Index(streamBody, "event: message_delta")])
		}, 1, llm.ErrStream},
		{"stream broken before text retried", func(w http.ResponseWriter, n int) {
			if n == 1 {
				io.WriteString(w, streamBody[:strings.Index(streamBody, "event: ping")])
				return
			}
			io.WriteString(w, streamBody)
		}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := llmtest.Server(t, func(w http.ResponseWriter, r *http.Request, n int) { tt.handler(w, n) })
			r := llm.NewRetrying(New(Config{BaseURL: srv.URL}), llm.RetryConfig{Attempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: time.Minute}, nil).
				WithSleep(func(context.Context, time.Duration) error { return nil })
			_, err := r.Complete(context.Background(), &llm.Request{Model: "m", Messages: []llm.Message{{Role: "user", Content: "x"}}},
				func(string) error { return nil })
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if len(*calls) != tt.wantCalls {
				t.Errorf("calls = %d, want %d", len(*calls), tt.wantCalls)
			}
		})
	}
}

func TestCanceledContext(t *testing.T) {
	release := make(chan struct{})
	srv, _ := llmtest.Server(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		io.WriteString(w, streamBody[:strings.Index(streamBody, "event: ping")])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	c := New(Config{BaseURL: srv.URL})
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err := c.Complete(ctx, &llm.Request{Model: "m", Messages: []llm.Message{{Role: "user", Content: "x"}}}, func(string) error { return nil })
	if !errors.Is(err, llm.ErrCanceled) {
		t.Errorf("err = %v, want canceled", err)
	}
}

func FuzzReadStream(f *testing.F) {
	f.Add(streamBody)
	f.Add(streamBody[:100])
	f.Add("event: error\ndata: " + errorBody("overloaded_error", "x") + "\n\n")
	f.Add("data: {\"type\":\"message_stop\"}\n\n")
	f.Add("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\r\rdata: {\"type\":\"message_stop\"}\r\r")
	c := New(Config{})
	f.Fuzz(func(t *testing.T, body string) { llmtest.CheckStream(t, body, c.readStream) })
}
