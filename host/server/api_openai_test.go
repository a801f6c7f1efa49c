package server

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/llm"
)

// Bodies as the official SDKs send them. The Python SDK (openai 1.x) and
// the Node SDK (openai 4.x/5.x) serialise only the parameters the caller
// passed; typed helpers add content parts, stream_options and the newer
// max_completion_tokens.
var sdkBodies = []struct {
	name       string
	body       string
	stream     bool
	usage      bool
	wantModel  string
	wantMsgs   []llm.Message
	wantMaxTok int
}{
	{name: "python minimal",
		body:      `{"messages":[{"role":"user","content":"Say this is a test"}],"model":"auto"}`,
		wantModel: "auto", wantMsgs: []llm.Message{{Role: "user", Content: "Say this is a test"}}},
	{name: "python system and params",
		body:      `{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello!"}],"model":"auto","max_tokens":256,"n":1,"temperature":0.7,"top_p":1,"user":"user-1234","frequency_penalty":0,"presence_penalty":0,"seed":42,"stop":null,"logprobs":false,"response_format":{"type":"text"}}`,
		wantModel: "auto", wantMaxTok: 256,
		wantMsgs: []llm.Message{{Role: "system", Content: "You are a helpful assistant."}, {Role: "user", Content: "Hello!"}}},
	{name: "python stream with usage",
		body:   `{"messages":[{"role":"user","content":"Hello"}],"model":"auto","stream":true,"stream_options":{"include_usage":true}}`,
		stream: true, usage: true, wantModel: "auto", wantMsgs: []llm.Message{{Role: "user", Content: "Hello"}}},
	{name: "node content parts",
		body:      `{"model":"auto","messages":[{"role":"developer","content":[{"type":"text","text":"Be brief."}]},{"role":"user","content":[{"type":"text","text":"What is"},{"type":"text","text":"a wingman?"}]}],"max_completion_tokens":100}`,
		wantModel: "auto", wantMaxTok: 100,
		wantMsgs: []llm.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "What is\na wingman?"}}},
	{name: "node stream multi-turn with assistant null content",
		body:   `{"model":"economy","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null},{"role":"assistant","content":"Hello! How can I help?","name":"coach"},{"role":"user","content":"tell me a joke"}],"stream":true,"temperature":1}`,
		stream: true, wantModel: "economy",
		wantMsgs: []llm.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: ""}, {Role: "assistant", Content: "Hello! How can I help?", Name: "coach"}, {Role: "user", Content: "tell me a joke"}}},
	{name: "named model, empty tools, stream_options false",
		body:      `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hello"}],"tools":[],"stream":false,"stream_options":null,"metadata":{},"store":false,"logprobs":false,"top_p":1,"frequency_penalty":0,"response_format":{"type":"text"},"functions":null}`,
		wantModel: "claude-sonnet-4-5", wantMsgs: []llm.Message{{Role: "user", Content: "hello"}}},
}

func TestParseSDKBodies(t *testing.T) {
	for _, tt := range sdkBodies {
		t.Run(tt.name, func(t *testing.T) {
			r, oe := parseCompletionRequest([]byte(tt.body))
			if oe != nil {
				t.Fatalf("refused: %+v", oe)
			}
			if r.Model != tt.wantModel || r.Stream != tt.stream || r.IncludeUsage != tt.usage || r.MaxTokens != tt.wantMaxTok {
				t.Errorf("parsed %+v", r)
			}
			if !reflect.DeepEqual(r.Messages, tt.wantMsgs) {
				t.Errorf("messages = %+v, want %+v", r.Messages, tt.wantMsgs)
			}
		})
	}
}

func TestParseRefusals(t *testing.T) {
	tests := []struct {
		name, body, param string
	}{
		{"not json", `{"model":`, ""},
		{"trailing", `{"model":"auto","messages":[{"role":"user","content":"x"}]} {}`, ""},
		{"no model", `{"messages":[{"role":"user","content":"x"}]}`, "model"},
		{"model wrong type", `{"model":5,"messages":[{"role":"user","content":"x"}]}`, "model"},
		{"no messages", `{"model":"auto","messages":[]}`, "messages"},
		{"custom tool", `{"model":"auto","messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{"name":"f"}}]}`, "tools[0].type"},
		{"tool name", `{"model":"auto","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a b"}}]}`, "tools[0].function.name"},
		{"tool choice without tools", `{"model":"auto","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}`, "tool_choice"},
		{"tool choice of no tool", `{"model":"auto","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, "tool_choice.function.name"},
		{"functions", `{"model":"auto","messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}`, "functions"},
		{"unknown parameter", `{"model":"auto","messages":[{"role":"user","content":"x"}],"frobnicate":1}`, "frobnicate"},
		{"logprobs", `{"model":"auto","messages":[{"role":"user","content":"x"}],"logprobs":true}`, "logprobs"},
		{"logit_bias", `{"model":"auto","messages":[{"role":"user","content":"x"}],"logit_bias":{"50256":-100}}`, "logit_bias"},
		{"metadata", `{"model":"auto","messages":[{"role":"user","content":"x"}],"metadata":{"k":"v"}}`, "metadata"},
		{"store", `{"model":"auto","messages":[{"role":"user","content":"x"}],"store":true}`, "store"},
		{"reasoning_effort", `{"model":"auto","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low"}`, "reasoning_effort"},
		{"five stop sequences", `{"model":"auto","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}`, "stop"},
		{"empty stop sequence", `{"model":"auto","messages":[{"role":"user","content":"x"}],"stop":""}`, "stop"},
		{"response_format type", `{"model":"auto","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}`, "response_format.type"},
		{"penalty range", `{"model":"auto","messages":[{"role":"user","content":"x"}],"presence_penalty":2.5}`, "presence_penalty"},
		{"tool message without id", `{"model":"auto","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id"},
		{"tool calls on a user message", `{"model":"auto","messages":[{"role":"user","content":"x","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, "messages[0].tool_calls"},
		{"n=2", `{"model":"auto","messages":[{"role":"user","content":"x"}],"n":2}`, "n"},
		{"temperature", `{"model":"auto","messages":[{"role":"user","content":"x"}],"temperature":3}`, "temperature"},
		{"max_tokens zero", `{"model":"auto","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, "max_tokens"},
		{"max_tokens string", `{"model":"auto","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}`, "max_tokens"},
		{"missing role", `{"model":"auto","messages":[{"content":"x"}]}`, "messages[0].role"},
		{"function role", `{"model":"auto","messages":[{"role":"function","content":"x","name":"f"}]}`, "messages[0].role"},
		{"user null content", `{"model":"auto","messages":[{"role":"user","content":null}]}`, "messages[0].content"},
		{"image part", `{"model":"auto","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`, "messages[0].content[0].type"},
		{"content number", `{"model":"auto","messages":[{"role":"user","content":7}]}`, "messages[0].content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, oe := parseCompletionRequest([]byte(tt.body))
			if oe == nil {
				t.Fatal("accepted")
			}
			if oe.Status != 400 || oe.Type != "invalid_request_error" || oe.Param != tt.param {
				t.Errorf("error = %+v, want param %q", oe, tt.param)
			}
			if _, ok := apierr.Lookup(apierr.Code(oe.Code)); !ok {
				t.Errorf("code %q is not in the error table", oe.Code)
			}
		})
	}
}

// TestParseParams: what a body sets beside the conversation reaches the
// provider's request; neutral values (top_p 1, penalties 0, text format)
// are not sent.
func TestParseParams(t *testing.T) {
	body := `{"model":"auto","messages":[{"role":"user","content":"weather?"},
	  {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
	  {"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"4 C"}]}],
	  "tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}}],
	  "tool_choice":"required","parallel_tool_calls":false,"stop":"END","seed":42,"top_p":0.9,"frequency_penalty":0.5,"presence_penalty":0,
	  "response_format":{"type":"json_object"}}`
	r, oe := parseCompletionRequest([]byte(body))
	if oe != nil {
		t.Fatal(oe)
	}
	p := r.Params
	if len(p.Tools) != 1 || p.Tools[0].Name != "get_weather" || p.Tools[0].Description != "d" || p.Tools[0].Strict == nil || !*p.Tools[0].Strict ||
		!strings.Contains(string(p.Tools[0].Parameters), `"city"`) {
		t.Errorf("tools %+v", p.Tools)
	}
	if p.ToolChoice == nil || p.ToolChoice.Mode != llm.ToolChoiceRequired || p.ParallelToolCalls == nil || *p.ParallelToolCalls {
		t.Errorf("tool choice %+v parallel %v", p.ToolChoice, p.ParallelToolCalls)
	}
	if !reflect.DeepEqual(p.Stop, []string{"END"}) || p.Seed == nil || *p.Seed != 42 || p.TopP == nil || *p.TopP != 0.9 ||
		p.FrequencyPenalty == nil || *p.FrequencyPenalty != 0.5 || p.PresencePenalty != nil || string(p.ResponseFormat) != `{"type":"json_object"}` {
		t.Errorf("params %+v", p)
	}
	want := []llm.Message{{Role: "user", Content: "weather?"},
		{Role: "assistant", ToolCalls: []llm.ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}},
		{Role: "tool", Content: "4 C", ToolCallID: "c1"}}
	if !reflect.DeepEqual(r.Messages, want) {
		t.Errorf("messages %+v", r.Messages)
	}
	r, oe = parseCompletionRequest([]byte(`{"model":"auto","messages":[{"role":"user","content":"x"}],"top_p":1,"frequency_penalty":0,"response_format":{"type":"text"},"tool_choice":"none"}`))
	if oe != nil || r.Params.Used() != nil {
		t.Errorf("neutral values: %+v, %v", r.Params, oe)
	}
}

func FuzzParseCompletionRequest(f *testing.F) {
	for _, b := range sdkBodies {
		f.Add(b.body)
	}
	f.Add(`{"model":"auto","messages":[{"role":"user","content":[{"type":"text"}]}]}`)
	f.Add(`{"model":"auto","messages":[{"role":"user","content":"x"}],"max_tokens":1e30}`)
	f.Add(`{"model":"auto","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false}`)
	f.Add(`{"model":"auto","messages":[{"role":"user","content":"x"}],"stop":["a","b"],"seed":7,"top_p":0.5,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{}}}}`)
	f.Fuzz(func(t *testing.T, body string) {
		r, oe := parseCompletionRequest([]byte(body))
		if oe != nil {
			if oe.Status != 400 || oe.Message == "" {
				t.Fatalf("bad error %+v", oe)
			}
			if _, ok := apierr.Lookup(apierr.Code(oe.Code)); !ok {
				t.Fatalf("code %q is not in the error table", oe.Code)
			}
			return
		}
		if len(r.Params.Stop) > maxStopSequences || len(r.Params.Tools) > maxTools {
			t.Fatalf("over a bound: %+v", r.Params)
		}
		if r.Params.ToolChoice != nil && r.Params.ToolChoice.Mode != llm.ToolChoiceNone && len(r.Params.Tools) == 0 {
			t.Fatalf("tool choice without tools: %+v", r.Params)
		}
		if r.Model == "" || len(r.Messages) == 0 || r.MaxTokens < 0 {
			t.Fatalf("accepted an invalid request: %+v", r)
		}
		for _, m := range r.Messages {
			if m.Role != "user" && m.Role != "assistant" && m.Role != "system" && m.Role != "tool" {
				t.Fatalf("role %q", m.Role)
			}
		}
	})
}

// TestCompletionsWithSDKBodies sends each SDK body to the endpoint and
// checks the answer's shape the way the SDKs read it.
func TestCompletionsWithSDKBodies(t *testing.T) {
	f := newChatFixture(t, lengthRouter{}, nil, 1)
	for _, tt := range sdkBodies {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(t, "POST", "/v1/chat/completions", 1, tt.body,
				"Accept", "application/json", "User-Agent", "OpenAI/Python 1.54.0", "X-Stainless-Lang", "python")
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if !tt.stream {
				var resp struct {
					ID      string `json:"id"`
					Object  string `json:"object"`
					Created int64  `json:"created"`
					Model   string `json:"model"`
					Choices []struct {
						Index   int `json:"index"`
						Message struct {
							Role    string `json:"role"`
							Content string `json:"content"`
						} `json:"message"`
						FinishReason string `json:"finish_reason"`
					} `json:"choices"`
					Usage struct {
						PromptTokens     int `json:"prompt_tokens"`
						CompletionTokens int `json:"completion_tokens"`
						TotalTokens      int `json:"total_tokens"`
					} `json:"usage"`
				}
				if err := json.Unmarshal(r.body, &resp); err != nil {
					t.Fatal(err)
				}
				c := resp.Choices
				if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Created == 0 || len(c) != 1 ||
					c[0].Message.Role != "assistant" || c[0].Message.Content == "" || c[0].FinishReason != "stop" {
					t.Errorf("response = %s", r.body)
				}
				if resp.Usage.PromptTokens <= 0 || resp.Usage.CompletionTokens <= 0 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
					t.Errorf("usage = %+v", resp.Usage)
				}
				if tt.wantModel == "claude-sonnet-4-5" && (resp.Model != "claude-sonnet-4-5" || r.header.Get("X-Wingate-Tier") != "standard") {
					t.Errorf("named model not passed through: %s, tier %q", resp.Model, r.header.Get("X-Wingate-Tier"))
				}
				if tt.wantModel == "auto" && r.header.Get("X-Wingate-Tier") == "" {
					t.Errorf("no tier header")
				}
				return
			}
			evs := readEvents(t, r.body)
			if len(evs) < 3 || evs[len(evs)-1].Data != "[DONE]" {
				t.Fatalf("stream = %s", r.body)
			}
			var text strings.Builder
			var usageSeen, finishSeen bool
			for i, ev := range evs[:len(evs)-1] {
				var ch map[string]any
				if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				if ch["object"] != "chat.completion.chunk" {
					t.Fatalf("chunk %d object %v", i, ch["object"])
				}
				if m, _ := ch["model"].(string); !strings.HasPrefix(m, "claude-") {
					t.Errorf("chunk %d names model %q, not the one answering", i, m)
				}
				u, hasUsage := ch["usage"]
				if tt.usage && !hasUsage {
					t.Errorf("chunk %d lacks the usage key", i)
				}
				choices := ch["choices"].([]any)
				if len(choices) == 0 {
					usageSeen = u != nil
					um := u.(map[string]any)
					if um["prompt_tokens"].(float64) <= 0 || um["completion_tokens"].(float64) <= 0 {
						t.Errorf("usage chunk %v", um)
					}
					continue
				}
				c0 := choices[0].(map[string]any)
				d := c0["delta"].(map[string]any)
				if i == 0 && d["role"] != "assistant" {
					t.Errorf("first chunk without role: %v", d)
				}
				if s, ok := d["content"].(string); ok {
					text.WriteString(s)
				}
				if c0["finish_reason"] != nil {
					finishSeen = true
				}
			}
			if text.Len() == 0 || !finishSeen || usageSeen != tt.usage {
				t.Errorf("text %q finish %v usage %v", text.String(), finishSeen, usageSeen)
			}
		})
	}
}

func TestCompletionsErrorsInOpenAIShape(t *testing.T) {
	f := newChatFixture(t, lengthRouter{}, nil, 1)
	ok := `{"model":"auto","messages":[{"role":"user","content":"hi"}]}`
	check := func(t *testing.T, r httpResult, status int, typ, param string) {
		t.Helper()
		var body struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
				Code    any     `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		gotParam := ""
		if body.Error.Param != nil {
			gotParam = *body.Error.Param
		}
		if r.status != status || body.Error.Type != typ || gotParam != param || body.Error.Message == "" {
			t.Errorf("%d %s, want %d %s param %q", r.status, r.body, status, typ, param)
		}
		if !strings.Contains(string(r.body), `"param"`) || !strings.Contains(string(r.body), `"code"`) {
			t.Errorf("error lacks param/code keys: %s", r.body)
		}
	}
	t.Run("no key", func(t *testing.T) {
		check(t, f.do(t, "POST", "/v1/chat/completions", 0, ok), 401, "authentication_error", "")
	})
	t.Run("bad param", func(t *testing.T) {
		check(t, f.do(t, "POST", "/v1/chat/completions", 1, `{"model":"auto","messages":[{"role":"user","content":"x"}],"n":3}`), 400, "invalid_request_error", "n")
	})
	t.Run("last not user", func(t *testing.T) {
		check(t, f.do(t, "POST", "/v1/chat/completions", 1, `{"model":"auto","messages":[{"role":"assistant","content":"x"}]}`), 400, "invalid_request_error", "messages")
	})
	f.sim.SetDown("*", true)
	t.Run("every tier down", func(t *testing.T) { check(t, f.do(t, "POST", "/v1/chat/completions", 1, ok), 503, "server_error", "") })
	t.Run("every tier down streaming", func(t *testing.T) {
		check(t, f.do(t, "POST", "/v1/chat/completions", 1, `{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}`), 503, "server_error", "")
	})
	t.Run("named model down", func(t *testing.T) {
		check(t, f.do(t, "POST", "/v1/chat/completions", 1, `{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}`), 502, "server_error", "")
	})
	t.Run("unknown model", func(t *testing.T) {
		check(t, f.do(t, "POST", "/v1/chat/completions", 1, `{"model":"some-model","messages":[{"role":"user","content":"hi"}]}`), 404, "invalid_request_error", "model")
	})
	t.Run("unknown path under /v1", func(t *testing.T) {
		check(t, f.do(t, "GET", "/v1/embeddingz", 1, ""), 404, "invalid_request_error", "")
		check(t, f.do(t, "POST", "/v1/models", 1, "{}"), 405, "invalid_request_error", "")
	})
}
