package openai

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/llmtest"
)

// completionJSON is a chat.completion object as OpenAI returns it.
const completionJSON = `{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 1219, "completion_tokens": 10, "total_tokens": 1229,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}`

// streamBody is a streamed completion with stream_options.include_usage.
const streamBody = `data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}}

data: [DONE]

`

func temp(f float64) *float64 { return &f }

func TestCompleteRequestShapeAndUsage(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, completionJSON)
	})
	c := New(Config{APIKey: "sk-test", BaseURL: srv.URL + "/v1/", Organization: "org-1"})
	resp, err := c.Complete(context.Background(), &llm.Request{
		Model:       "gpt-4.1",
		System:      "You are a coach.",
		Messages:    []llm.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "Hello"}, {Role: "user", Content: "help"}},
		MaxTokens:   200,
		Temperature: temp(0.2),
		User:        "42",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]any{
		"model": "gpt-4.1", "max_tokens": float64(200), "temperature": 0.2, "user": "42",
		"messages": []any{
			map[string]any{"role": "system", "content": "You are a coach."},
			map[string]any{"role": "user", "content": "hi"},
			map[string]any{"role": "assistant", "content": "Hello"},
			map[string]any{"role": "user", "content": "help"},
		},
	}
	llmtest.CheckRequest(t, *calls, "/v1/chat/completions", map[string]string{"Authorization": "Bearer sk-test", "Content-Type": "application/json", "OpenAI-Organization": "org-1"}, wantBody)
	want := &llm.Response{ID: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", Model: "gpt-4.1-2025-04-14", Text: "Hello! How can I assist you today?",
		StopReason: "stop", Usage: llm.Usage{InputTokens: 195, CacheReadTokens: 1024, OutputTokens: 10}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("resp = %+v, want %+v", resp, want)
	}
}

func TestMaxCompletionTokens(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, _ *http.Request, _ int) { io.WriteString(w, completionJSON) })
	c := New(Config{BaseURL: srv.URL, MaxCompletionTokens: true})
	if _, err := c.Complete(context.Background(), &llm.Request{Model: "o3", Messages: []llm.Message{{Role: "user", Content: "x"}}, MaxTokens: 50}, nil); err != nil {
		t.Fatal(err)
	}
	b := (*calls)[0].Body
	if b["max_completion_tokens"] != float64(50) || b["max_tokens"] != nil {
		t.Errorf("body = %v", b)
	}
	if _, ok := (*calls)[0].Header["Authorization"]; ok {
		t.Error("Authorization sent without a key")
	}
}

func TestStreamReassembly(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < len(streamBody); i += 13 {
			io.WriteString(w, streamBody[i:min(i+13, len(streamBody))])
			w.(http.Flusher).Flush()
		}
	})
	c := New(Config{BaseURL: srv.URL})
	var deltas []string
	resp, err := c.Complete(context.Background(), &llm.Request{Model: "gpt-4o-mini", Messages: []llm.Message{{Role: "user", Content: "hi"}}},
		func(s string) error { deltas = append(deltas, s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	b := (*calls)[0].Body
	if b["stream"] != true || !reflect.DeepEqual(b["stream_options"], map[string]any{"include_usage": true}) {
		t.Errorf("stream options not sent: %v", b)
	}
	if want := []string{"Hello", " there"}; !reflect.DeepEqual(deltas, want) {
		t.Errorf("deltas = %q, want %q", deltas, want)
	}
	want := &llm.Response{ID: "chatcmpl-123", Model: "gpt-4o-mini", Text: "Hello there", StopReason: "stop", Usage: llm.Usage{InputTokens: 9, OutputTokens: 2}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("resp = %+v, want %+v", resp, want)
	}
}

func errBody(typ, code, msg string) string {
	return `{"error":{"message":"` + msg + `","type":"` + typ + `","param":null,"code":"` + code + `"}}`
}

func TestErrorMapping(t *testing.T) {
	tests := []llmtest.ErrorCase{
		{Name: "429 retry-after seconds", Status: 429, Header: map[string]string{"retry-after": "3"},
			Body: errBody("requests", "rate_limit_exceeded", "Rate limit reached"), WantStatus: 429, WantKind: llm.ErrRateLimited, WantType: "requests", WantAfter: 3 * time.Second},
		{Name: "429 retry-after-ms", Status: 429, Header: map[string]string{"retry-after-ms": "1500", "retry-after": "2"},
			Body: errBody("requests", "rate_limit_exceeded", "Rate limit reached"), WantStatus: 429, WantKind: llm.ErrRateLimited, WantType: "requests", WantAfter: 1500 * time.Millisecond},
		{Name: "429 quota is not retryable", Status: 429, Body: errBody("insufficient_quota", "insufficient_quota", "You exceeded your current quota"),
			WantStatus: 429, WantKind: llm.ErrAuth, WantType: "insufficient_quota"},
		{Name: "500", Status: 500, Body: errBody("server_error", "", "The server had an error"), WantStatus: 500, WantKind: llm.ErrUnavailable, WantType: "server_error"},
		{Name: "503 plain text", Status: 503, Body: "upstream connect error", WantStatus: 503, WantKind: llm.ErrUnavailable},
		{Name: "400", Status: 400, Body: errBody("invalid_request_error", "", "messages: too short"), WantStatus: 400, WantKind: llm.ErrBadRequest, WantType: "invalid_request_error"},
		{Name: "404 model", Status: 404, Body: errBody("invalid_request_error", "model_not_found", "The model does not exist"), WantStatus: 404, WantKind: llm.ErrBadRequest, WantType: "invalid_request_error"},
		{Name: "401", Status: 401, Body: errBody("invalid_request_error", "invalid_api_key", "Incorrect API key"), WantStatus: 401, WantKind: llm.ErrAuth, WantType: "invalid_request_error"},
		{Name: "stream breaks before DONE", Status: 200, Stream: true, Body: streamBody[:strings.Index(streamBody, "data: [DONE]")], WantKind: llm.ErrStream, WantDeltas: 2},
		{Name: "stream cut mid-chunk", Status: 200, Stream: true, Body: streamBody[:strings.Index(streamBody, `" there`)], WantKind: llm.ErrStream, WantDeltas: 1},
		{Name: "stream error object", Status: 200, Stream: true,
			Body: "data: " + errBody("server_error", "", "overloaded") + "\n\n", WantKind: llm.ErrUnavailable, WantType: "server_error"},
		{Name: "stream malformed", Status: 200, Stream: true, Body: "data: {\"choices\": [\n\n", WantKind: llm.ErrStream},
		{Name: "no choices", Status: 200, Body: `{"id":"x","choices":[]}`, WantStatus: 200, WantKind: llm.ErrUnavailable},
	}
	llmtest.RunErrorCases(t, tests, func(url string) llm.Provider { return New(Config{BaseURL: url}) })
}

func TestRetryThenSucceed(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		switch n {
		case 1:
			w.Header().Set("retry-after-ms", "250")
			w.WriteHeader(429)
			io.WriteString(w, errBody("requests", "rate_limit_exceeded", "slow down"))
		case 2: // breaks before any text: safe to retry
			io.WriteString(w, streamBody[:strings.Index(streamBody, "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}")])
		default:
			io.WriteString(w, streamBody)
		}
	})
	var waits []time.Duration
	r := llm.NewRetrying(New(Config{BaseURL: srv.URL}), llm.RetryConfig{Attempts: 3, BaseDelay: 50 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: 5 * time.Second}, nil).
		WithSleep(func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil })
	resp, err := r.Complete(context.Background(), &llm.Request{Model: "m", Messages: []llm.Message{{Role: "user", Content: "x"}}}, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(*calls) != 3 || resp.Text != "Hello there" || resp.Usage.OutputTokens != 2 {
		t.Errorf("calls %d, resp %+v", len(*calls), resp)
	}
	if len(waits) != 2 || waits[0] != 250*time.Millisecond || waits[1] < 50*time.Millisecond || waits[1] > 100*time.Millisecond {
		t.Errorf("waits = %v", waits)
	}
}

func FuzzReadStream(f *testing.F) {
	f.Add(streamBody)
	f.Add(streamBody[:200])
	f.Add("data: [DONE]\n\n")
	f.Add("data: " + errBody("server_error", "", "x") + "\n\n")
	f.Add("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n")
	c := New(Config{})
	f.Fuzz(func(t *testing.T, body string) { llmtest.CheckStream(t, body, c.readStream) })
}
