package server

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wingman-app/wingate/host/llm"
)

// TestParseMessagesRequest: what the Messages API parser takes, and every
// refusal naming what it refuses.
func TestParseMessagesRequest(t *testing.T) {
	r, e := parseMessagesRequest([]byte(`{"model": "auto", "max_tokens": 64, "system": [{"type": "text", "text": "Be kind."}],
		"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
		{"role": "user", "content": "go on"}], "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "metadata": {"user_id": "u-1"},
		"stream": true, "tools": null, "thinking": null}`))
	if e != nil {
		t.Fatal(e)
	}
	if r.Model != "auto" || r.MaxTokens != 64 || !r.Stream || r.User != "u-1" || *r.Temperature != 0.5 || *r.Params.TopP != 0.9 || r.Params.Stop[0] != "END" {
		t.Errorf("parsed %+v", r)
	}
	want := []llm.Message{{Role: "system", Content: "Be kind."}, {Role: "user", Content: "hi"}, {Role: "assistant", Content: "a\n\nb"}, {Role: "user", Content: "go on"}}
	if len(r.Messages) != len(want) {
		t.Fatalf("messages %+v", r.Messages)
	}
	for i := range want {
		if r.Messages[i].Role != want[i].Role || r.Messages[i].Content != want[i].Content {
			t.Errorf("message %d: %+v, want %+v", i, r.Messages[i], want[i])
		}
	}
	tooManyBlocks := `{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": [` +
		strings.Repeat(`{"type": "text", "text": "x"},`, maxMessagesBlocks) + `{"type": "text", "text": "x"}]}]}`
	tooManyMessages := `{"model": "auto", "max_tokens": 5, "messages": [` +
		strings.Repeat(`{"role": "user", "content": "x"},`, maxCompletionMessages) + `{"role": "user", "content": "x"}]}`
	for _, tc := range []struct{ body, mentions string }{
		{tooManyBlocks, "content blocks"},
		{tooManyMessages, "messages"},
		{`{"model": "auto", "max_tokens": 1048577, "messages": [{"role": "user", "content": "x"}]}`, "max_tokens"},
		{`[]`, "JSON object"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]} {}`, "trailing data"},
		{`{"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}`, "model"},
		{`{"model": "auto", "messages": [{"role": "user", "content": "x"}]}`, "max_tokens"},
		{`{"model": "auto", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}`, "max_tokens"},
		{`{"model": "auto", "max_tokens": 5, "messages": []}`, "messages"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}`, "messages.0.role"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}`, "messages.0.content.0.type"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": 7}]}`, "messages.0.content"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "top_k": 5}`, "top_k"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}`, "tools.0.type"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]}`, "tools.0.input_schema"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [` + strings.TrimSuffix(strings.Repeat(`{"name": "f", "input_schema": {}},`, 129), ",") + `]}`, "tools"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "assistant", "content": [` + strings.TrimSuffix(strings.Repeat(`{"type": "tool_use", "id": "t", "name": "f", "input": {}},`, 129), ",") + `]}]}`, "messages.0.content"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "any"}}`, "tool_choice"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}`, "messages.0.content.0.type"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": 3}]}]}`, "messages.0.content.0"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}`, "frobnicate"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 1.5}`, "temperature"},
		{`{"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": ["a","b","c","d","e"]}`, "stop_sequences"},
	} {
		_, e := parseMessagesRequest([]byte(tc.body))
		if e == nil || e.Status != 400 || e.Type != "invalid_request_error" || !strings.Contains(e.Message, tc.mentions) {
			t.Errorf("%s: %+v; want a 400 invalid_request_error naming %s", tc.body, e, tc.mentions)
		}
	}
}

// FuzzParseMessagesRequest: any body is parsed or refused with a 400 of
// Anthropic's shape, never a panic; what is taken is within the bounds.
func FuzzParseMessagesRequest(f *testing.F) {
	f.Add([]byte(`{"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}`))
	f.Add([]byte(`{"model": "auto", "max_tokens": 64, "system": "s", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}], "stream": true}`))
	f.Add([]byte(`{"model": "x", "max_tokens": 1, "messages": [{"role": "assistant", "content": [{"type": "tool_use"}]}], "metadata": {"user_id": null}}`))
	f.Add([]byte(`{"model": 1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := parseMessagesRequest(body)
		if e != nil {
			if e.Status != 400 || e.Type != "invalid_request_error" || e.Message == "" || !utf8.ValidString(e.Type) {
				t.Fatalf("refusal %+v", e)
			}
			return
		}
		if r.Model == "" || r.MaxTokens < 1 || len(r.Messages) == 0 || len(r.Params.Stop) > maxStopSequences {
			t.Fatalf("taken: %+v", r)
		}
		if r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 1) {
			t.Fatalf("temperature %v", *r.Temperature)
		}
	})
}
