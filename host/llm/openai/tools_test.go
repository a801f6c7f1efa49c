package openai

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

// toolStreamBody streams two tool calls, their arguments in pieces.
const toolStreamBody = `data: {"id":"c","model":"gpt-4.1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}

data: {"id":"c","model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}

data: {"id":"c","model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]},"finish_reason":null}]}

data: {"id":"c","model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]}

data: {"id":"c","model":"gpt-4.1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

`

// TestToolsAndParams: every parameter reaches the wire in OpenAI's
// shape, tool calls and results included, and tool calls come back,
// plain and streamed.
func TestToolsAndParams(t *testing.T) {
	srv, calls := llmtest.Server(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, toolStreamBody)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","model":"gpt-4.1","choices":[{"index":0,"message":{"role":"assistant","content":null,
		  "tool_calls":[{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},"finish_reason":"tool_calls"}],
		  "usage":{"prompt_tokens":50,"completion_tokens":9,"total_tokens":59}}`)
	})
	c := New(Config{BaseURL: srv.URL})
	seed, topP, fp, strict, par := int64(7), 0.5, 0.25, true, false
	req := &llm.Request{Model: "gpt-4.1", Messages: []llm.Message{
		{Role: "user", Content: "weather?"},
		{Role: "assistant", ToolCalls: []llm.ToolCall{{ID: "call_0", Name: "get_weather", Arguments: `{"city":"Bergen"}`}}},
		{Role: "tool", ToolCallID: "call_0", Content: "9 C"},
		{Role: "user", Content: "and Oslo?", Name: "sam"},
	}, Params: llm.Params{TopP: &topP, Stop: []string{"END"}, Seed: &seed, FrequencyPenalty: &fp,
		ResponseFormat: json.RawMessage(`{"type":"json_object"}`), ParallelToolCalls: &par,
		Tools:      []llm.Tool{{Name: "get_weather", Description: "weather", Parameters: json.RawMessage(`{"type":"object"}`), Strict: &strict}},
		ToolChoice: &llm.ToolChoice{Mode: llm.ToolChoiceFunction, Name: "get_weather"}}}
	resp, err := c.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []llm.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}
	if !reflect.DeepEqual(resp.ToolCalls, want) || resp.StopReason != "tool_calls" || resp.Text != "" {
		t.Errorf("response %+v", resp)
	}
	body := (*calls)[0].Body
	wantBody := map[string]any{
		"model": "gpt-4.1", "top_p": 0.5, "stop": []any{"END"}, "seed": float64(7), "frequency_penalty": 0.25,
		"response_format": map[string]any{"type": "json_object"}, "parallel_tool_calls": false,
		"tools":       []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "description": "weather", "parameters": map[string]any{"type": "object"}, "strict": true}}},
		"tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}},
		"messages": []any{
			map[string]any{"role": "user", "content": "weather?"},
			map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_0", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city":"Bergen"}`}}}},
			map[string]any{"role": "tool", "content": "9 C", "tool_call_id": "call_0"},
			map[string]any{"role": "user", "content": "and Oslo?", "name": "sam"},
		},
	}
	if !reflect.DeepEqual(body, wantBody) {
		t.Errorf("body = %#v\nwant %#v", body, wantBody)
	}
	resp, err = c.Complete(context.Background(), req, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, llm.ToolCall{ID: "call_b", Name: "get_time", Arguments: "{}"})
	if !reflect.DeepEqual(resp.ToolCalls, want) || resp.StopReason != "tool_calls" || llm.FinishReason(resp.StopReason) != llm.FinishToolCalls {
		t.Errorf("streamed %+v", resp)
	}
}

func FuzzReadToolStream(f *testing.F) {
	f.Add(toolStreamBody)
	f.Add(`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":5,"function":{"arguments":"x"}}]}}]}` + "\n\ndata: [DONE]\n\n")
	f.Add(`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"x"}}]}}]}` + "\n\ndata: [DONE]\n\n")
	c := New(Config{})
	f.Fuzz(func(t *testing.T, body string) { llmtest.CheckStream(t, body, c.readStream) })
}
