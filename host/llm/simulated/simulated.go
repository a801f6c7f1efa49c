// Package simulated is an offline model provider: deterministic answers
// built from the request, token usage counted with the same o200k tokenizer
// as the host's budgets, configurable latency, and failure injection for
// tests and drills. Every answer says it is simulated: Response.Simulated
// is set and the text starts with "[simulated <model>]".
package simulated

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/wingman-app/wingate/host/llm"
)

// Options configures a Provider.
type Options struct {
	// FirstToken is the delay before the first text; PerToken is added for
	// each output token. Both zero: answers are immediate.
	FirstToken time.Duration
	PerToken   time.Duration
	// Log receives one line per call, labelled simulated. Nil discards.
	Log *slog.Logger
}

// Provider is the simulated provider. Safe for concurrent use.
type Provider struct {
	opt  Options
	log  *slog.Logger
	mu   sync.RWMutex
	down map[string]error // model (or "*") → injected failure
}

var _ llm.Provider = (*Provider)(nil)

// New returns a simulated provider.
func New(opt Options) *Provider {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{opt: opt, log: log.With("provider", "simulated"), down: map[string]error{}}
}

// Name returns "simulated".
func (p *Provider) Name() string { return "simulated" }

// SetDown makes calls for model ("*": every model) fail with a 503-like
// unavailable error (down true) or work again (down false).
func (p *Provider) SetDown(model string, down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if down {
		p.down[model] = &llm.Error{Provider: "simulated", Kind: llm.KindUnavailable, Status: 503, Type: "overloaded_error", Message: "simulated outage of " + model}
	} else {
		delete(p.down, model)
	}
}

func (p *Provider) failure(model string) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := p.down[model]; err != nil {
		return err
	}
	return p.down["*"]
}

// Features says what the simulated provider takes beside temperature:
// top_p, seed and participant names (its answers are deterministic
// whatever they are, as with temperature), stop sequences (the answer is
// cut before the first one) and tools (it calls one when the
// conversation ends with a user message, see Complete).
func (p *Provider) Features() llm.Feature {
	return llm.FeatureTopP | llm.FeatureStop | llm.FeatureSeed | llm.FeatureTools | llm.FeatureNames | llm.FeatureHotTemperature
}

// Stop reasons the simulated provider reports, as Anthropic's Messages
// API names them.
const (
	StopEndTurn  = "end_turn"
	StopMaxTok   = "max_tokens"
	StopSequence = "stop_sequence"
	StopToolUse  = "tool_use"
)

// Complete answers req deterministically: the same request always gets the
// same text and usage. An answer cut at req.MaxTokens reports max_tokens;
// one cut at a stop sequence stop_sequence. With tools offered (and a
// tool choice other than none) a conversation ending with a user message
// gets a call of the chosen tool, or the first, with arguments filled
// from its schema's properties; one ending with a tool's result gets a
// text answer.
func (p *Provider) Complete(ctx context.Context, req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error) {
	if err := p.failure(req.Model); err != nil {
		return nil, err
	}
	if len(req.Messages) == 0 {
		return nil, &llm.Error{Provider: p.Name(), Kind: llm.KindBadRequest, Status: 400, Message: "messages: at least one message is required"}
	}
	lastMsg := req.Messages[len(req.Messages)-1]
	last := lastMsg.Content
	resp := &llm.Response{
		ID:         fmt.Sprintf("sim-%016x", hash(req.Model, last, fmt.Sprint(len(req.Messages)))),
		Model:      req.Model,
		StopReason: StopEndTurn,
		Simulated:  true,
	}
	if call, ok := toolCall(req, resp.ID); ok {
		resp.ToolCalls, resp.StopReason = []llm.ToolCall{call}, StopToolUse
	} else {
		text, cut := AnswerCut(req.Model, last, req.MaxTokens)
		if cut {
			resp.StopReason = StopMaxTok
		}
		for _, seq := range req.Stop {
			if i := strings.Index(text, seq); seq != "" && i >= 0 {
				text, resp.StopReason = text[:i], StopSequence
			}
		}
		resp.Text = text
	}
	text := resp.Text
	in := llm.CountMessages(req.System, req.Messages)
	out := llm.CountTokens(text)
	for _, c := range resp.ToolCalls {
		out += llm.CountTokens(c.Name) + llm.CountTokens(c.Arguments)
	}
	resp.Usage = llm.Usage{InputTokens: in, OutputTokens: out}
	start := time.Now()
	if err := llm.Sleep(ctx, p.opt.FirstToken); err != nil {
		return nil, &llm.Error{Provider: p.Name(), Kind: llm.KindCanceled, Err: err}
	}
	if onDelta != nil {
		words := strings.SplitAfter(text, " ")
		if text == "" {
			words = nil
		}
		for _, w := range words {
			if err := llm.Sleep(ctx, p.opt.PerToken); err != nil {
				return nil, &llm.Error{Provider: p.Name(), Kind: llm.KindCanceled, Err: err}
			}
			if err := onDelta(w); err != nil {
				return nil, llm.AsError(p.Name(), err)
			}
		}
	} else if err := llm.Sleep(ctx, time.Duration(out)*p.opt.PerToken); err != nil {
		return nil, &llm.Error{Provider: p.Name(), Kind: llm.KindCanceled, Err: err}
	}
	p.log.Debug("simulated completion", "model", req.Model, "input_tokens", in, "output_tokens", out,
		"stream", onDelta != nil, "took", time.Since(start))
	return resp, nil
}

func hash(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

var (
	openers = []string{
		"That's a great question to bring up.",
		"Thanks for sharing that with me.",
		"I hear you, and that's a common feeling.",
		"Good thinking.",
		"Let's work through this together.",
		"That makes a lot of sense.",
	}
	bodies = []string{
		"Start small: pick one low-stakes moment today and make eye contact with a smile.",
		"Confidence grows from repetition, so treat each conversation as practice rather than a test.",
		"Notice what went well last time, even if it felt minor, and build on that.",
		"A simple open question like asking about their day keeps the other person talking.",
		"Your wingman can help by starting the conversation so you can join in naturally.",
		"Breathe slowly before you approach; it lowers your heart rate and steadies your voice.",
		"Rejection is information, not a verdict on you, and everyone you admire has faced it.",
		"Write down one thing you learned after each challenge so progress becomes visible.",
		"Try the next challenge at a slightly higher difficulty once this one feels easy.",
		"Keep your body language open: uncrossed arms and relaxed shoulders invite people in.",
		"Compliment something specific that someone chose, like a book or a jacket, not their looks.",
		"If the conversation stalls, share a short story of your own and then ask a question back.",
	}
	closers = []string{
		"You've got this.",
		"Let me know how it goes.",
		"Want to set a small goal for this week?",
		"Which part feels hardest right now?",
		"I'm here if you want to talk it through afterwards.",
	}
)

// toolCall returns the call the simulated model makes for req, if any:
// tools offered, a tool choice other than none, and the conversation
// ending with a user message (or a tool choice that requires a call).
func toolCall(req *llm.Request, id string) (llm.ToolCall, bool) {
	if len(req.Tools) == 0 {
		return llm.ToolCall{}, false
	}
	mode := llm.ToolChoiceAuto
	if req.ToolChoice != nil {
		mode = req.ToolChoice.Mode
	}
	last := req.Messages[len(req.Messages)-1]
	switch {
	case mode == llm.ToolChoiceNone:
		return llm.ToolCall{}, false
	case mode == llm.ToolChoiceAuto && last.Role != llm.RoleUser:
		return llm.ToolCall{}, false
	}
	tool := req.Tools[0]
	if mode == llm.ToolChoiceFunction {
		for _, t := range req.Tools {
			if t.Name == req.ToolChoice.Name {
				tool = t
			}
		}
	}
	return llm.ToolCall{ID: "call_" + strings.TrimPrefix(id, "sim-"), Name: tool.Name, Arguments: arguments(tool.Parameters, last.Content)}, true
}

// arguments fills an object schema's properties: strings with the
// message (at most 60 bytes of it), numbers with 1, booleans with true,
// anything else with null.
func arguments(schema json.RawMessage, message string) string {
	var s struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(schema, &s) // no schema: no arguments
	if len(message) > 60 {
		message = strings.ToValidUTF8(message[:60], "")
	}
	args := make(map[string]any, len(s.Properties))
	for name, prop := range s.Properties {
		switch prop.Type {
		case "string":
			args[name] = message
		case "number", "integer":
			args[name] = 1
		case "boolean":
			args[name] = true
		default:
			args[name] = nil
		}
	}
	b, _ := json.Marshal(args) // sorted keys: deterministic
	return string(b)
}

// Answer returns the simulated text for a message to model, capped near
// maxTokens (0: no cap). It is deterministic.
func Answer(model, message string, maxTokens int) string {
	s, _ := AnswerCut(model, message, maxTokens)
	return s
}

// AnswerCut is Answer, and whether the cap cut the text short.
func AnswerCut(model, message string, maxTokens int) (string, bool) {
	h := hash(model, message)
	var b strings.Builder
	fmt.Fprintf(&b, "[simulated %s] ", model)
	b.WriteString(openers[h%uint64(len(openers))])
	h /= uint64(len(openers))
	n := 1 + int(h%4) // one to four body sentences
	h /= 4
	// Longer questions get fuller answers, as real models tend to give.
	n += min(len(message)/200, 3)
	for i := 0; i < n; i++ {
		b.WriteByte(' ')
		b.WriteString(bodies[(h+uint64(i)*7)%uint64(len(bodies))])
	}
	b.WriteByte(' ')
	b.WriteString(closers[(h>>8)%uint64(len(closers))])
	s := b.String()
	cut := false
	if maxTokens > 0 {
		for llm.CountTokens(s) > maxTokens {
			cut = true
			i := strings.LastIndexByte(strings.TrimRight(s, " "), ' ')
			if i <= 0 {
				break
			}
			s = s[:i]
		}
	}
	return s, cut
}
