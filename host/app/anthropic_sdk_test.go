package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/wingman-app/wingate/host/auth"
)

// TestAnthropicSDKAgainstServe: Anthropic's official Go SDK pointed at
// the assembly serve builds (its API key a Wingate token): a message, a
// stream in Anthropic's event order, max_tokens truncation both ways, and
// as typed errors an unknown model, a parameter the gateway does not
// take, a key it did not sign.
func TestAnthropicSDKAgainstServe(t *testing.T) {
	_, base := listening(t, nil, nil)
	au, err := auth.New([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := au.Issue(5, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := anthropic.NewClient(option.WithBaseURL(base+"/"), option.WithAPIKey(tok), option.WithMaxRetries(0))
	ctx := context.Background()
	ask := func(model string, maxTokens int64) anthropic.MessageNewParams {
		return anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: maxTokens,
			System:   []anthropic.TextBlockParam{{Text: "You are a friendly coach."}},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("How do I open a conversation at a climbing gym?"))}}
	}
	apiErr := func(t *testing.T, err error, status int, typ, mentions string) {
		t.Helper()
		var ae *anthropic.Error
		if !errors.As(err, &ae) {
			t.Fatalf("error %v (%T) is not the SDK's *anthropic.Error", err, err)
		}
		if ae.StatusCode != status || string(ae.Type()) != typ || !strings.Contains(ae.Message, mentions) {
			t.Errorf("error %d %s %q; want %d %s mentioning %q", ae.StatusCode, ae.Type(), ae.Message, status, typ, mentions)
		}
	}

	t.Run("message", func(t *testing.T) {
		var raw *http.Response
		msg, err := client.Messages.New(ctx, ask("auto", 300), option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text == "" || msg.Role != "assistant" {
			t.Errorf("content %+v", msg.Content)
		}
		if msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.InputTokens <= 0 || msg.Usage.OutputTokens <= 0 || !strings.HasPrefix(msg.ID, "msg_") {
			t.Errorf("stop %q, usage %+v, id %q", msg.StopReason, msg.Usage, msg.ID)
		}
		if st := raw.Header.Get("Server-Timing"); !strings.Contains(st, "provider-ttft;dur=") {
			t.Errorf("Server-Timing %q", st)
		}
	})
	stream := func(t *testing.T, p anthropic.MessageNewParams) (anthropic.Message, []string) {
		t.Helper()
		s := client.Messages.NewStreaming(ctx, p)
		var msg anthropic.Message
		var types []string
		for s.Next() {
			ev := s.Current()
			if len(types) == 0 || types[len(types)-1] != ev.Type {
				types = append(types, ev.Type)
			}
			if err := msg.Accumulate(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		return msg, types
	}
	t.Run("stream", func(t *testing.T) {
		msg, types := stream(t, ask("auto", 300))
		want := "message_start content_block_start content_block_delta content_block_stop message_delta message_stop"
		if got := strings.Join(types, " "); got != want {
			t.Errorf("events %q; want %q", got, want)
		}
		if len(msg.Content) != 1 || msg.Content[0].Text == "" || msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.OutputTokens <= 0 {
			t.Errorf("accumulated %+v, stop %q, usage %+v", msg.Content, msg.StopReason, msg.Usage)
		}
	})
	t.Run("max_tokens", func(t *testing.T) {
		msg, err := client.Messages.New(ctx, ask("economy", 3))
		if err != nil || msg.StopReason != anthropic.StopReasonMaxTokens {
			t.Errorf("plain: %v %+v", err, msg)
		}
		smsg, _ := stream(t, ask("economy", 3))
		if smsg.StopReason != anthropic.StopReasonMaxTokens {
			t.Errorf("streamed: stop %q", smsg.StopReason)
		}
	})
	t.Run("unknown model", func(t *testing.T) {
		_, err := client.Messages.New(ctx, ask("claude-nothing-1", 50))
		apiErr(t, err, 404, "not_found_error", "model")
	})
	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx, anthropic.ModelListParams{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if len(ids) < 4 || ids[0] != "auto" || !slices.Contains(ids, "economy") || page.HasMore {
			t.Errorf("models %v", ids)
		}
		if m, err := client.Models.Get(ctx, "economy", anthropic.ModelGetParams{}); err != nil || m.ID != "economy" {
			t.Errorf("get economy: %+v %v", m, err)
		}
		_, err = client.Models.Get(ctx, "claude-nothing-1", anthropic.ModelGetParams{})
		apiErr(t, err, 404, "not_found_error", "model")
	})
	t.Run("tools round trip", func(t *testing.T) {
		p := ask("auto", 200)
		p.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is the weather in Oslo right now?"))}
		p.Tools = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather", Description: anthropic.String("current weather of a city"),
			InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}, Required: []string{"city"}}}}}
		m, err := client.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var use anthropic.ToolUseBlock
		for _, b := range m.Content {
			if b.Type == "tool_use" {
				use = b.AsToolUse()
			}
		}
		var args struct {
			City string `json:"city"`
		}
		if m.StopReason != anthropic.StopReasonToolUse || use.Name != "get_weather" || use.ID == "" ||
			json.Unmarshal(use.Input, &args) != nil || args.City == "" {
			t.Fatalf("message %+v", m)
		}
		// Streamed, the SDK's accumulator rebuilds the same call from the
		// input_json_delta.
		st := client.Messages.NewStreaming(ctx, p)
		var acc anthropic.Message
		for st.Next() {
			if err := acc.Accumulate(st.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		var streamed anthropic.ToolUseBlock
		for _, b := range acc.Content {
			if b.Type == "tool_use" {
				streamed = b.AsToolUse()
			}
		}
		if acc.StopReason != anthropic.StopReasonToolUse || streamed.Name != "get_weather" || string(streamed.Input) != string(use.Input) {
			t.Errorf("streamed %+v (input %s, want %s)", acc, streamed.Input, use.Input)
		}
		// The result goes back in a tool_result block; the model answers in text.
		p.Messages = append(p.Messages, m.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "4 degrees and rain", false)))
		m2, err := client.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if m2.StopReason != anthropic.StopReasonEndTurn || len(m2.Content) != 1 || m2.Content[0].Text == "" {
			t.Errorf("after the tool result: %+v", m2)
		}
	})
	t.Run("server tools refused", func(t *testing.T) {
		p := ask("auto", 50)
		p.Tools = []anthropic.ToolUnionParam{{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{}}}
		_, err := client.Messages.New(ctx, p)
		apiErr(t, err, 400, "invalid_request_error", "tools.0.type")
	})
	t.Run("key not signed here", func(t *testing.T) {
		other := anthropic.NewClient(option.WithBaseURL(base+"/"), option.WithAPIKey("not-a-wingate-token"), option.WithMaxRetries(0))
		_, err := other.Messages.New(ctx, ask("auto", 50))
		apiErr(t, err, 401, "authentication_error", "")
	})
}
