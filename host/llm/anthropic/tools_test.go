package anthropic

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/llmtest"
)

// toolStreamBody is a streamed answer with text, then a tool_use block
// whose input arrives in pieces.
const toolStreamBody = `event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":50,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Oslo\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":20}}

event: message_stop
data: {"type":"message_stop"}

`

// TestToolsAndParams: top_p, stop sequences and tools reach the Messages
// API in its shape (tool calls as tool_use blocks, results as
// tool_result blocks in a user turn, parallel_tool_calls false as
// disable_parallel_tool_use), and tool_use blocks come back as tool
// calls, plain and streamed.
func TestToolsAndParams(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, toolStreamBody)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_reason":"tool_use",
		  "content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}}],
		  "usage":{"input_tokens":50,"output_tokens":20}}`)
	})
	c := New(Config{APIKey: "k", BaseURL: srv.URL})
	topP, par := 0.5, false
	req := &llm.Request{Model: "claude-sonnet-4-5", MaxTokens: 100, Messages: []llm.Message{
		{Role: "user", Content: "weather?"},
		{Role: "assistant", ToolCalls: []llm.ToolCall{{ID: "toolu_0", Name: "get_weather", Arguments: `{"city":"Bergen"}`}}},
		{Role: "tool", ToolCallID: "toolu_0", Content: "9 C"},
		{Role: "user", Content: "and Oslo?"},
	}, Params: llm.Params{TopP: &topP, Stop: []string{"END"}, ParallelToolCalls: &par,
		Tools:      []llm.Tool{{Name: "get_weather", Description: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}},
		ToolChoice: &llm.ToolChoice{Mode: llm.ToolChoiceRequired}}}
	resp, err := c.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []llm.ToolCall{{ID: "toolu_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}
	if !reflect.DeepEqual(resp.ToolCalls, want) || resp.Text != "Checking." || llm.FinishReason(resp.StopReason) != llm.FinishToolCalls {
		t.Errorf("response %+v", resp)
	}
	wantBody := map[string]any{
		"model": "claude-sonnet-4-5", "max_tokens": float64(100), "top_p": 0.5, "stop_sequences": []any{"END"},
		"tools":       []any{map[string]any{"name": "get_weather", "description": "weather", "input_schema": map[string]any{"type": "object"}}},
		"tool_choice": map[string]any{"type": "any", "disable_parallel_tool_use": true},
		"messages": []any{
			map[string]any{"role": "user", "content": "weather?"},
			map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": map[string]any{"city": "Bergen"}}}},
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "tool_result", "tool_use_id": "toolu_0", "content": "9 C"},
				map[string]any{"type": "text", "text": "and Oslo?"},
			}},
		},
	}
	if body := (*calls)[0].Body; !reflect.DeepEqual(body, wantBody) {
		t.Errorf("body = %#v\nwant %#v", body, wantBody)
	}
	var text string
	resp, err = c.Complete(context.Background(), req, func(s string) error { text += s; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(resp.ToolCalls, []llm.ToolCall{{ID: "toolu_1", Name: "get_weather", Arguments: `{"city": "Oslo"}`}}) ||
		text != "Checking." || resp.StopReason != "tool_use" {
		t.Errorf("streamed %+v, text %q", resp, text)
	}
}

func FuzzReadToolStream(f *testing.F) {
	f.Add(toolStreamBody)
	f.Add("data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\ndata: {\"type\":\"message_stop\"}\n\n")
	c := New(Config{})
	f.Fuzz(func(t *testing.T, body string) { llmtest.CheckStream(t, body, c.readStream) })
}
