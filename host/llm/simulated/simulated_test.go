package simulated

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/llm"
)

func TestDeterministicAndLabelled(t *testing.T) {
	p := New(Options{})
	req := &llm.Request{Model: "claude-haiku-4-5", System: "coach", Messages: []llm.Message{{Role: "user", Content: "How do I start a conversation at a party?"}}}
	a, err := p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Complete(context.Background(), req, nil)
	if a.Text != b.Text || a.Usage != b.Usage {
		t.Errorf("not deterministic: %q vs %q", a.Text, b.Text)
	}
	if !a.Simulated || !strings.HasPrefix(a.Text, "[simulated claude-haiku-4-5] ") {
		t.Errorf("not labelled: %+v", a)
	}
	if want := llm.CountMessages(req.System, req.Messages); a.Usage.InputTokens != want {
		t.Errorf("input tokens %d, want %d", a.Usage.InputTokens, want)
	}
	if a.Usage.OutputTokens != llm.CountTokens(a.Text) || a.Usage.OutputTokens < 15 {
		t.Errorf("output tokens %d for %q", a.Usage.OutputTokens, a.Text)
	}
	var sb strings.Builder
	s, err := p.Complete(context.Background(), req, func(d string) error { sb.WriteString(d); return nil })
	if err != nil || sb.String() != a.Text || s.Text != a.Text {
		t.Errorf("stream = %q, %v; want %q", sb.String(), err, a.Text)
	}
	c, _ := p.Complete(context.Background(), &llm.Request{Model: "claude-haiku-4-5", Messages: []llm.Message{{Role: "user", Content: "x"}}, MaxTokens: 20}, nil)
	if c.Usage.OutputTokens > 20 {
		t.Errorf("max tokens not honoured: %d", c.Usage.OutputTokens)
	}
}

func TestDownAndLatency(t *testing.T) {
	p := New(Options{FirstToken: time.Hour})
	p.SetDown("m1", true)
	_, err := p.Complete(context.Background(), &llm.Request{Model: "m1", Messages: []llm.Message{{Role: "user", Content: "x"}}}, nil)
	if !errors.Is(err, llm.ErrUnavailable) {
		t.Errorf("down model: err = %v", err)
	}
	p.SetDown("m1", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = p.Complete(ctx, &llm.Request{Model: "m1", Messages: []llm.Message{{Role: "user", Content: "x"}}}, nil)
	if !errors.Is(err, llm.ErrCanceled) {
		t.Errorf("latency not bounded by context: %v", err)
	}
	p.SetDown("*", true)
	if _, err := p.Complete(context.Background(), &llm.Request{Model: "other", Messages: []llm.Message{{Role: "user", Content: "x"}}}, nil); !errors.Is(err, llm.ErrUnavailable) {
		t.Errorf("all down: err = %v", err)
	}
}

// TestStopReasons: an answer cut at max_tokens says max_tokens (finish
// reason length), one cut at a stop sequence stop_sequence, a whole one
// end_turn; offered tools, it calls one, then answers the result.
func TestStopReasons(t *testing.T) {
	p := New(Options{})
	ctx := context.Background()
	ask := []llm.Message{{Role: "user", Content: "How do I start a conversation at a party?"}}
	whole, _ := p.Complete(ctx, &llm.Request{Model: "m", Messages: ask}, nil)
	cut, _ := p.Complete(ctx, &llm.Request{Model: "m", Messages: ask, MaxTokens: 8}, nil)
	if whole.StopReason != StopEndTurn || cut.StopReason != StopMaxTok || llm.FinishReason(cut.StopReason) != llm.FinishLength ||
		cut.Usage.OutputTokens > 8 || !strings.HasPrefix(whole.Text, cut.Text) {
		t.Errorf("whole %q (%s), cut %q (%s)", whole.Text, whole.StopReason, cut.Text, cut.StopReason)
	}
	// A cap the answer fits is no cut.
	fits, _ := p.Complete(ctx, &llm.Request{Model: "m", Messages: ask, MaxTokens: whole.Usage.OutputTokens}, nil)
	if fits.StopReason != StopEndTurn || fits.Text != whole.Text {
		t.Errorf("cap of exactly the answer: %s", fits.StopReason)
	}
	seq := strings.Fields(whole.Text)[4]
	stopped, _ := p.Complete(ctx, &llm.Request{Model: "m", Messages: ask, Params: llm.Params{Stop: []string{"never there", seq}}}, nil)
	if stopped.StopReason != StopSequence || strings.Contains(stopped.Text, seq) || !strings.HasPrefix(whole.Text, stopped.Text) {
		t.Errorf("stop %q: %q (%s)", seq, stopped.Text, stopped.StopReason)
	}
	tools := llm.Params{Tools: []llm.Tool{{Name: "a"}, {Name: "b", Parameters: []byte(`{"properties":{"q":{"type":"string"},"ok":{"type":"boolean"}}}`)}}}
	call, _ := p.Complete(ctx, &llm.Request{Model: "m", Messages: ask, Params: tools}, nil)
	if len(call.ToolCalls) != 1 || call.ToolCalls[0].Name != "a" || call.ToolCalls[0].Arguments != "{}" || call.StopReason != StopToolUse || call.Text != "" {
		t.Errorf("tool call %+v", call)
	}
	tools.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceFunction, Name: "b"}
	var deltas int
	call, _ = p.Complete(ctx, &llm.Request{Model: "m", Messages: ask, Params: tools}, func(string) error { deltas++; return nil })
	if len(call.ToolCalls) != 1 || call.ToolCalls[0].Arguments != `{"ok":true,"q":"How do I start a conversation at a party?"}` || deltas != 0 {
		t.Errorf("chosen tool call %+v, %d deltas", call, deltas)
	}
	tools.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceNone}
	none, _ := p.Complete(ctx, &llm.Request{Model: "m", Messages: ask, Params: tools}, nil)
	if len(none.ToolCalls) != 0 || none.StopReason != StopEndTurn {
		t.Errorf("tool choice none: %+v", none)
	}
}
