package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	openaisdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// sdkClient is OpenAI's Go SDK pointed at base's /v1 with user 1's
// token as the API key.
func sdkClient(tb testing.TB, base string) openaisdk.Client {
	return openaisdk.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(strings.TrimPrefix(bearer(tb, 1), "Bearer ")),
		option.WithMaxRetries(0))
}

// apiErr returns err as the SDK's typed error, failing the test if it is
// not one with status, code and param.
func apiErr(t *testing.T, err error, status int, code, param string) {
	t.Helper()
	var e *openaisdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *openai.Error", err)
	}
	if e.StatusCode != status || e.Code != code || e.Param != param || e.Type != "invalid_request_error" || e.Message == "" {
		t.Errorf("error %d code %q param %q type %q message %q, want %d %q %q", e.StatusCode, e.Code, e.Param, e.Type, e.Message, status, code, param)
	}
}

var weatherTool = openaisdk.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openaisdk.String("current weather of a city"),
	Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
		"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
})

// TestOpenAISDKAgainstServe drives the OpenAI-compatible surface of the
// server as `wingate serve` assembles it (defaults: simulated models, the
// built policies) with OpenAI's own Go SDK: the models list, plain and
// streamed chat, a tool round trip both ways, an unknown model, an
// unsupported parameter and max_tokens truncation.
func TestOpenAISDKAgainstServe(t *testing.T) {
	_, base := listening(t, nil, nil)
	client := sdkClient(t, base)
	ctx := context.Background()
	ask := []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("What is the weather in Oslo right now?")}

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
			if m.Object != "model" || m.OwnedBy == "" {
				t.Errorf("model %+v", m)
			}
		}
		want := []string{"auto", "economy", "standard", "premium", "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"}
		if !slices.Equal(ids, want) {
			t.Errorf("models %v, want %v", ids, want)
		}
		m, err := client.Models.Get(ctx, "claude-opus-4-5")
		if err != nil || m.OwnedBy != "simulated" {
			t.Errorf("get: %+v, %v", m, err)
		}
		_, err = client.Models.Get(ctx, "gpt-nothing")
		apiErr(t, err, 404, "model_not_found", "model")
	})

	t.Run("chat", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask,
			Temperature: openaisdk.Float(0.2), Seed: openaisdk.Int(7), TopP: openaisdk.Float(0.9)})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || !strings.HasPrefix(resp.Choices[0].Message.Content, "[simulated claude-") || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("choices %+v", resp.Choices)
		}
	})

	t.Run("streaming", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openaisdk.ChatCompletionNewParams{Model: "standard", Messages: ask,
			StreamOptions: openaisdk.ChatCompletionStreamOptionsParam{IncludeUsage: openaisdk.Bool(true)}})
		var acc openaisdk.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" || acc.Choices[0].FinishReason != "stop" || acc.Usage.CompletionTokens == 0 {
			t.Errorf("accumulated %+v usage %+v", acc.Choices, acc.Usage)
		}
	})

	t.Run("tools round trip", func(t *testing.T) {
		params := openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask, Tools: []openaisdk.ChatCompletionToolUnionParam{weatherTool}}
		resp, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		ch := resp.Choices[0]
		if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "get_weather" {
			t.Fatalf("choice %+v", ch)
		}
		call := ch.Message.ToolCalls[0]
		var args struct {
			City string `json:"city"`
		}
		if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil || args.City == "" {
			t.Errorf("arguments %q: %v", call.Function.Arguments, err)
		}
		// Streamed, the same call arrives through the SDK's accumulator.
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var acc openaisdk.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || len(acc.Choices[0].Message.ToolCalls) != 1 ||
			acc.Choices[0].Message.ToolCalls[0].Function.Arguments != call.Function.Arguments || acc.Choices[0].Message.ToolCalls[0].ID != call.ID {
			t.Errorf("streamed tool call %+v", acc.Choices)
		}
		// The result goes back; the model answers in text.
		params.Messages = append(params.Messages, ch.Message.ToParam(), openaisdk.ToolMessage("4 degrees and rain", call.ID))
		resp, err = client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if ch := resp.Choices[0]; ch.FinishReason != "stop" || ch.Message.Content == "" || len(ch.Message.ToolCalls) != 0 {
			t.Errorf("answer after the tool result: %+v", ch)
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "gpt-nothing", Messages: ask})
		apiErr(t, err, 404, "model_not_found", "model")
		stream := client.Chat.Completions.NewStreaming(ctx, openaisdk.ChatCompletionNewParams{Model: "gpt-nothing", Messages: ask})
		for stream.Next() {
			t.Error("a chunk for an unknown model")
		}
		apiErr(t, stream.Err(), 404, "model_not_found", "model")
	})

	t.Run("unsupported parameter", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask, Logprobs: openaisdk.Bool(true)})
		apiErr(t, err, 400, "unsupported_parameter", "logprobs")
		// The simulated provider has no JSON mode: refused, not ignored.
		_, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "economy", Messages: ask,
			ResponseFormat: openaisdk.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}})
		apiErr(t, err, 400, "unsupported_parameter", "response_format")
		_, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask},
			option.WithJSONSet("frobnicate", true))
		apiErr(t, err, 400, "unsupported_parameter", "frobnicate")
	})

	t.Run("max_tokens truncation", func(t *testing.T) {
		for _, mt := range []struct {
			name   string
			params openaisdk.ChatCompletionNewParams
		}{
			{"max_tokens", openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask, MaxTokens: openaisdk.Int(6)}},
			{"max_completion_tokens", openaisdk.ChatCompletionNewParams{Model: "premium", Messages: ask, MaxCompletionTokens: openaisdk.Int(6)}},
		} {
			resp, err := client.Chat.Completions.New(ctx, mt.params)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Choices[0].FinishReason != "length" || resp.Usage.CompletionTokens > 6 {
				t.Errorf("%s: finish %q, %d tokens", mt.name, resp.Choices[0].FinishReason, resp.Usage.CompletionTokens)
			}
			stream := client.Chat.Completions.NewStreaming(ctx, mt.params)
			var acc openaisdk.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if acc.Choices[0].FinishReason != "length" || acc.Choices[0].Message.Content != resp.Choices[0].Message.Content {
				t.Errorf("%s streamed: finish %q, %q", mt.name, acc.Choices[0].FinishReason, acc.Choices[0].Message.Content)
			}
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		var out map[string]any
		err := client.Get(ctx, "embeddingz", nil, &out)
		apiErr(t, err, 404, "not_found", "")
	})
}

// upstream is a fake OpenAI-compatible provider that records the bodies
// it is sent: it calls the first tool offered when the conversation ends
// with a user message, else answers "upstream answer", cut with
// finish_reason length under 3 tokens.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
	conns  atomic.Int64 // connections accepted
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req struct {
			Model    string `json:"model"`
			Stream   bool   `json:"stream"`
			MaxToks  int    `json:"max_tokens"`
			Messages []struct {
				Role string `json:"role"`
			} `json:"messages"`
			Tools []struct {
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			} `json:"tools"`
		}
		var body map[string]any
		if json.Unmarshal(b, &req) != nil || json.Unmarshal(b, &body) != nil || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, `{"error":{"message":"bad request","type":"invalid_request_error"}}`, 400)
			return
		}
		u.mu.Lock()
		u.bodies = append(u.bodies, body)
		u.mu.Unlock()
		msg := map[string]any{"role": "assistant", "content": "upstream answer"}
		finish := "stop"
		if len(req.Tools) > 0 && req.Messages[len(req.Messages)-1].Role == "user" {
			msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_up", "type": "function",
				"function": map[string]any{"name": req.Tools[0].Function.Name, "arguments": `{"city":"Oslo"}`}}}}
			finish = "tool_calls"
		} else if req.MaxToks > 0 && req.MaxToks < 3 {
			msg["content"], finish = "upstream", "length"
		}
		usage := map[string]any{"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"id": "up-1", "object": "chat.completion", "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}}, "usage": usage})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		delta := map[string]any{"role": "assistant"}
		for k, v := range msg {
			delta[k] = v
		}
		if tc, ok := delta["tool_calls"].([]any); ok {
			tc[0].(map[string]any)["index"] = 0
		}
		for _, ch := range []map[string]any{
			{"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": nil}}},
			{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finish}}},
			{"choices": []any{}, "usage": usage},
		} {
			ch["id"], ch["object"], ch["model"] = "up-1", "chat.completion.chunk", req.Model
			b, _ := json.Marshal(ch)
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	u.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// last returns the last body the provider was sent.
func (u *upstream) last(t *testing.T) map[string]any {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatal("the provider was not called")
	}
	return u.bodies[len(u.bodies)-1]
}

// TestOpenAISDKThroughProvider: with an OpenAI-compatible provider behind
// the gateway (serve's openai provider), the parameters an SDK sets reach
// it, its tool calls and finish reasons come back, plain and streamed,
// and an unknown model is passed to it only with pass-through on.
func TestOpenAISDKThroughProvider(t *testing.T) {
	up := startUpstream(t)
	_, base := listening(t, nil, func(c *Config) { c.LLMProvider, c.OpenAIBaseURL = "openai", up.URL+"/v1" })
	client := sdkClient(t, base)
	ctx := context.Background()
	ask := []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("What is the weather in Oslo right now?")}

	resp, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "standard", Messages: ask,
		Seed: openaisdk.Int(7), TopP: openaisdk.Float(0.5), FrequencyPenalty: openaisdk.Float(0.25),
		Stop:           openaisdk.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END", "STOP"}},
		ResponseFormat: openaisdk.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "upstream answer" || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("answer %+v", resp.Choices[0])
	}
	got := up.last(t)
	for k, want := range map[string]any{"model": "claude-sonnet-4-5", "seed": float64(7), "top_p": 0.5, "frequency_penalty": 0.25,
		"stop": []any{"END", "STOP"}, "response_format": map[string]any{"type": "json_object"}} {
		if b, w := fmt.Sprint(got[k]), fmt.Sprint(want); b != w {
			t.Errorf("provider got %s = %s, want %s", k, b, w)
		}
	}

	for _, stream := range []bool{false, true} {
		params := openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask, Tools: []openaisdk.ChatCompletionToolUnionParam{weatherTool},
			ToolChoice:        openaisdk.ToolChoiceOptionFunctionToolChoice(openaisdk.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"}),
			ParallelToolCalls: openaisdk.Bool(false)}
		var ch openaisdk.ChatCompletionChoice
		if stream {
			s := client.Chat.Completions.NewStreaming(ctx, params)
			var acc openaisdk.ChatCompletionAccumulator
			for s.Next() {
				acc.AddChunk(s.Current())
			}
			if err := s.Err(); err != nil || len(acc.Choices) != 1 {
				t.Fatalf("stream: %v, %+v", err, acc.Choices)
			}
			ch = acc.Choices[0]
		} else {
			resp, err := client.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			ch = resp.Choices[0]
		}
		if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].ID != "call_up" ||
			ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Oslo"}` {
			t.Errorf("stream %v: tool call %+v", stream, ch)
		}
		got := up.last(t)
		tools, _ := got["tools"].([]any)
		if len(tools) != 1 || fmt.Sprint(got["tool_choice"]) != "map[function:map[name:get_weather] type:function]" || got["parallel_tool_calls"] != false {
			t.Errorf("provider got tools %v choice %v parallel %v", got["tools"], got["tool_choice"], got["parallel_tool_calls"])
		}
		// The result goes back as a tool message.
		params.Messages = append(params.Messages, ch.Message.ToParam(), openaisdk.ToolMessage("4 degrees", "call_up"))
		params.ToolChoice = openaisdk.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openaisdk.String("auto")}
		resp, err := client.Chat.Completions.New(ctx, params)
		if err != nil || resp.Choices[0].Message.Content != "upstream answer" {
			t.Fatalf("after the tool: %+v, %v", resp, err)
		}
		msgs := up.last(t)["messages"].([]any)
		lastMsg := msgs[len(msgs)-1].(map[string]any)
		prev := msgs[len(msgs)-2].(map[string]any)
		if lastMsg["role"] != "tool" || lastMsg["tool_call_id"] != "call_up" || lastMsg["content"] != "4 degrees" || prev["tool_calls"] == nil {
			t.Errorf("provider got messages %v", msgs)
		}
	}

	resp, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "economy", Messages: ask, MaxTokens: openaisdk.Int(2)})
	if err != nil || resp.Choices[0].FinishReason != "length" {
		t.Errorf("provider's length: %+v, %v", resp, err)
	}
	_, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "my-local-model", Messages: ask})
	apiErr(t, err, 404, "model_not_found", "model")

	_, passBase := listening(t, nil, func(c *Config) {
		c.LLMProvider, c.OpenAIBaseURL, c.LLMPassThrough = "openai", up.URL+"/v1", "on"
	})
	pass := sdkClient(t, passBase)
	resp, err = pass.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "my-local-model", Messages: ask})
	if err != nil || resp.Model != "my-local-model" || up.last(t)["model"] != "my-local-model" {
		t.Errorf("pass-through: %+v, %v", resp, err)
	}
}

// TestProviderConnectionsReused: through the assembly serve builds, 20
// rounds of 16 concurrent completions (plain and streamed) reach the
// provider over at most one connection per caller and a little slack;
// with WINGATE_LLM_MAX_IDLE_CONNS=2 the same load opens connections
// round after round, so the setting is what keeps them. The metric
// wingate_llm_connections_opened_total counts what the provider accepted.
func TestProviderConnectionsReused(t *testing.T) {
	const conc, rounds, slack = 16, 20, 4
	run := func(idle int64) int64 {
		up := startUpstream(t)
		a, base := listening(t, nil, func(c *Config) {
			c.LLMProvider, c.OpenAIBaseURL, c.LLMMaxIdleConns = "openai", up.URL+"/v1", idle
		})
		client := sdkClient(t, base)
		for r := range rounds {
			var wg sync.WaitGroup
			for w := range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := openaisdk.ChatCompletionNewParams{Model: "economy",
						Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage(fmt.Sprint("hello ", w))}}
					if (w+r)%2 == 0 {
						if _, err := client.Chat.Completions.New(context.Background(), p); err != nil {
							t.Error(err)
						}
						return
					}
					s := client.Chat.Completions.NewStreaming(context.Background(), p)
					for s.Next() {
					}
					if err := s.Err(); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
		}
		m := call(t, "GET", opsBase(a)+"/metrics", "")
		var counted string
		for _, line := range strings.Split(m.body, "\n") {
			if strings.HasPrefix(line, "wingate_llm_connections_opened_total{") && strings.Contains(line, `llm_provider="openai"`) {
				counted = line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		if got := up.conns.Load(); counted != fmt.Sprint(got) {
			t.Errorf("the provider accepted %d connections, the metric says %q", got, counted)
		}
		return up.conns.Load()
	}
	pooled, two := run(64), run(2)
	if pooled > conc+slack {
		t.Errorf("%d provider connections for %d concurrent callers", pooled, conc)
	}
	if two <= conc+slack {
		t.Errorf("with 2 idle connections kept, only %d provider connections: the setting does not reach the pool", two)
	}
	t.Logf("%d rounds of %d concurrent completions: %d provider connections (64 idle kept), %d (2 idle kept)", rounds, conc, pooled, two)
}

// TestProviderNeverSeesUserID: through the assembly serve builds, the
// provider's user field carries a keyed hash of the caller (token user 1,
// the SDK's user after it), never the id or the SDK's user; the hash
// stays the same across instances sharing the JWT secret, changes with
// WINGATE_LLM_USER_KEY, and WINGATE_LLM_USER=off sends no user at all.
func TestProviderNeverSeesUserID(t *testing.T) {
	up := startUpstream(t)
	ctx := context.Background()
	userOf := func(mutate func(*Config), sdkUser string) (string, bool) {
		t.Helper()
		_, base := listening(t, nil, func(c *Config) {
			c.LLMProvider, c.OpenAIBaseURL = "openai", up.URL+"/v1"
			if mutate != nil {
				mutate(c)
			}
		})
		client := sdkClient(t, base)
		p := openaisdk.ChatCompletionNewParams{Model: "auto",
			Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hello")}}
		if sdkUser != "" {
			p.User = openaisdk.String(sdkUser)
		}
		if _, err := client.Chat.Completions.New(ctx, p); err != nil {
			t.Fatal(err)
		}
		u, ok := up.last(t)["user"].(string)
		return u, ok
	}
	plain, ok := userOf(nil, "")
	if !ok || len(plain) != 34 || !strings.HasPrefix(plain, "u-") || plain == "1" {
		t.Fatalf("the provider was told user %q", plain)
	}
	withSDK, _ := userOf(nil, "alice@example.com")
	if strings.Contains(withSDK, "alice") || strings.Contains(withSDK, "1:") || withSDK == plain || len(withSDK) != 34 {
		t.Errorf("with the SDK's user the provider was told %q", withSDK)
	}
	if again, _ := userOf(nil, ""); again != plain {
		t.Errorf("another instance with the same secret hashes user 1 as %q, not %q", again, plain)
	}
	if keyed, _ := userOf(func(c *Config) { c.LLMUserKey = "another-key-0123456789" }, ""); keyed == plain || len(keyed) != 34 {
		t.Errorf("with WINGATE_LLM_USER_KEY the hash is %q (without: %q)", keyed, plain)
	}
	if u, ok := userOf(func(c *Config) { c.LLMUser = "off" }, "alice@example.com"); ok {
		t.Errorf("with WINGATE_LLM_USER=off the provider was told user %q", u)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for i, b := range up.bodies {
		raw, _ := json.Marshal(b)
		if strings.Contains(string(raw), "alice") || strings.Contains(string(raw), `"user":"1`) {
			t.Errorf("call %d told the provider who the user is: %s", i, raw)
		}
	}
}

// TestOpenAISDKThroughAnthropic: with Anthropic behind the gateway, what
// the Messages API takes reaches it in its shape (stop_sequences, top_p,
// tools, the user as a hash in metadata.user_id), its tool_use comes back
// as tool_calls with finish_reason tool_calls, and what it does not take
// (seed, a temperature above 1) is refused by name before any call.
func TestOpenAISDKThroughAnthropic(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	ant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if r.URL.Path != "/v1/messages" || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, `{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`, 400)
			return
		}
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if _, tools := body["tools"]; tools {
			io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","stop_reason":"tool_use",
			  "content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}}],"usage":{"input_tokens":30,"output_tokens":10}}`)
			return
		}
		io.WriteString(w, `{"id":"msg_2","type":"message","role":"assistant","model":"claude-haiku-4-5","stop_reason":"max_tokens",
		  "content":[{"type":"text","text":"It is"}],"usage":{"input_tokens":30,"output_tokens":2}}`)
	}))
	t.Cleanup(ant.Close)
	_, base := listening(t, nil, func(c *Config) { c.LLMProvider, c.AnthropicAPIKey, c.AnthropicBaseURL = "anthropic", "k", ant.URL })
	client := sdkClient(t, base)
	ctx := context.Background()
	ask := []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("What is the weather in Oslo right now?")}
	calls := func() int { mu.Lock(); defer mu.Unlock(); return len(bodies) }

	_, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask, Seed: openaisdk.Int(1)})
	apiErr(t, err, 400, "unsupported_parameter", "seed")
	_, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "economy", Messages: ask, Temperature: openaisdk.Float(1.5)})
	apiErr(t, err, 400, "unsupported_parameter", "temperature")
	if n := calls(); n != 0 {
		t.Fatalf("refused requests reached the provider: %d calls", n)
	}

	resp, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "economy", Messages: ask, MaxTokens: openaisdk.Int(2),
		TopP: openaisdk.Float(0.5), Stop: openaisdk.ChatCompletionNewParamsStopUnion{OfString: openaisdk.String("END")}})
	if err != nil || resp.Choices[0].FinishReason != "length" || resp.Choices[0].Message.Content != "It is" {
		t.Fatalf("answer %+v, %v", resp, err)
	}
	mu.Lock()
	got := bodies[len(bodies)-1]
	mu.Unlock()
	md, _ := got["metadata"].(map[string]any)
	uid, _ := md["user_id"].(string)
	if fmt.Sprint(got["stop_sequences"]) != "[END]" || got["top_p"] != 0.5 || got["max_tokens"] != float64(2) || len(uid) != 34 || uid == "1" {
		t.Errorf("the provider got %v", got)
	}

	resp, err = client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{Model: "auto", Messages: ask,
		Tools: []openaisdk.ChatCompletionToolUnionParam{weatherTool}, ParallelToolCalls: openaisdk.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].ID != "toolu_1" ||
		ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Oslo"}` {
		t.Errorf("tool call %+v", ch)
	}
	mu.Lock()
	got = bodies[len(bodies)-1]
	mu.Unlock()
	tools, _ := got["tools"].([]any)
	if len(tools) != 1 || fmt.Sprint(got["tool_choice"]) != "map[disable_parallel_tool_use:true type:auto]" {
		t.Errorf("the provider got tools %v, tool_choice %v", got["tools"], got["tool_choice"])
	}
}
