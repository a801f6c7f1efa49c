package chat

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/llm"
)

// ModelAuto is the gateway model name that routes and compresses.
const ModelAuto = "auto"

// ErrModelNotFound: the gateway serves no such model (and passing unknown
// models through is off).
var ErrModelNotFound = errors.New("chat: no such model")

// UnsupportedError is a request parameter a provider the request may
// reach does not take: the gateway refuses it rather than drop it.
type UnsupportedError struct {
	Param    string
	Provider string
}

func (e *UnsupportedError) Error() string {
	return "chat: parameter " + e.Param + " is not supported by provider " + e.Provider
}

// PartialError is a streamed answer that broke after part of it had
// reached the caller: it was not retried, and Usage (the context sent,
// the text received, counted) and CostUSD are what it is billed.
type PartialError struct {
	Err     error
	Tier    string
	Model   string
	Usage   llm.Usage
	CostUSD float64
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Estimate is a gateway request's worst case before it runs: what a
// budget reserves for it.
type Estimate struct {
	InputTokens  int
	OutputTokens int
	CostUSD      float64
}

// Estimate returns req's worst case: its messages' tokens as the pipeline
// counts them (compression only lowers them), its max_tokens or else the
// largest answer a tier it may reach gives, at the highest price among
// those tiers, plus a model-written summary's cost when one may be made.
// A model no tier names is priced as the premium tier, as it is billed.
func (s *Service) Estimate(req *CompletionRequest) Estimate {
	in := llm.CountMessages("", req.Messages)
	reach := s.tiers.List()
	if t, ok := s.tiers.Get(req.Model); !ok && req.Model != ModelAuto {
		if t, ok = s.tiers.ByModel(req.Model); ok {
			reach = []*llm.Tier{t}
		} else {
			p, _ := s.tiers.Get(llm.TierPremium)
			reach = []*llm.Tier{p}
		}
	}
	now := s.now()
	var e Estimate
	e.InputTokens = in
	for _, t := range reach {
		out := t.MaxOutputTokens
		if req.MaxTokens > 0 && (req.MaxTokens < out || out <= 0) {
			out = req.MaxTokens
		}
		e.OutputTokens = max(e.OutputTokens, out)
		e.CostUSD = max(e.CostUSD, t.PriceAt(now).Cost(llm.Usage{InputTokens: in, OutputTokens: out}))
	}
	_, byTierName := s.tiers.Get(req.Model)
	if (req.Model == ModelAuto || byTierName) && !s.extractive {
		if eco, ok := s.tiers.Get(llm.TierEconomy); ok {
			e.CostUSD += eco.PriceAt(now).Cost(llm.Usage{InputTokens: min(in, s.cfg.SummaryInputTokens), OutputTokens: s.cfg.SummaryMaxTokens})
		}
	}
	return e
}

// Model is one model the gateway serves (GET /v1/models).
type Model struct {
	ID string
	// OwnedBy is the provider serving it, or "wingate" for auto and the
	// tier names.
	OwnedBy string
}

// Models lists what the gateway answers for: auto (routed), each tier's
// name, each tier's provider model.
func (s *Service) Models() []Model {
	out := []Model{{ID: ModelAuto, OwnedBy: "wingate"}}
	for _, t := range s.tiers.List() {
		out = append(out, Model{ID: t.Name, OwnedBy: "wingate"})
	}
	seen := map[string]bool{}
	for _, t := range s.tiers.List() {
		if !seen[t.Model] {
			seen[t.Model] = true
			out = append(out, Model{ID: t.Model, OwnedBy: t.Provider})
		}
	}
	return out
}

// Model returns the model id names, when the gateway serves it.
func (s *Service) Model(id string) (Model, bool) {
	for _, m := range s.Models() {
		if m.ID == id {
			return m, true
		}
	}
	return Model{}, false
}

// PassesThrough reports whether models no tier names are passed to the
// default provider verbatim (Config.PassThroughModels).
func (s *Service) PassesThrough() bool { return s.cfg.PassThroughModels }

// checkParams refuses parameters of req one of the providers does not
// take.
func (s *Service) checkParams(req *CompletionRequest, providers []string) error {
	used := req.Params.Used()
	if req.Temperature != nil && *req.Temperature > 1 {
		used = append(used, llm.FeatureUse{Feature: llm.FeatureHotTemperature, Param: "temperature"})
	}
	for i, m := range req.Messages {
		if m.Name != "" {
			used = append(used, llm.FeatureUse{Feature: llm.FeatureNames, Param: "messages[" + strconv.Itoa(i) + "].name"})
			break
		}
	}
	for _, u := range used {
		for _, name := range providers {
			if llm.FeaturesOf(s.providers[name])&u.Feature == 0 {
				return &UnsupportedError{Param: u.Param, Provider: name}
			}
		}
	}
	return nil
}

// usesTools reports whether a conversation offers tools or carries tool
// calls or results: it then goes to the model verbatim.
func usesTools(req *CompletionRequest) bool {
	if len(req.Params.Tools) > 0 {
		return true
	}
	for _, m := range req.Messages {
		if m.Role == llm.RoleTool || len(m.ToolCalls) > 0 {
			return true
		}
	}
	return false
}

// CompletionRequest is a stateless gateway request (the OpenAI-compatible
// endpoint): the whole conversation comes with it.
type CompletionRequest struct {
	// Model is ModelAuto (routed and compressed), a tier name (that tier,
	// compressed, with fallback), a tier's model (that tier, verbatim, no
	// fallback) or any other model name, passed through verbatim to the
	// default provider.
	Model       string
	Messages    []llm.Message
	MaxTokens   int
	Temperature *float64
	// User identifies the end user; providers are told only what
	// Config.UpstreamUser makes of it.
	User string
	// Params are passed through to the provider; one a provider the
	// request may reach does not take is refused (*UnsupportedError).
	Params llm.Params
	// OnAttempt, when set, is called before each provider call with the
	// tier (empty for a passed-through model) and model about to answer,
	// so a streaming caller can label its chunks.
	OnAttempt func(tier, model string)
	// Timing, when set, is filled in as the request goes: the route
	// decision's and the compression's time before the first provider
	// call, the first token's time before it is passed to onDelta (so a
	// streaming caller reads them once the first chunk has come), the
	// provider's total at the end.
	Timing *Timing
}

// Timing is where a gateway request's time went (the Server-Timing
// header). Every field is zero until its step has run.
type Timing struct {
	// Route is the route policy's decision; Compress choosing the
	// context (the compress policy, the token counts, a summary call).
	Route, Compress time.Duration
	// FirstToken is from the first provider call's start to the first
	// token of the answer (the whole answer when not streamed), across
	// the fallbacks tried before it; Provider to the end of the answer.
	FirstToken, Provider time.Duration
}

// Completion is the gateway's answer.
type Completion struct {
	Response *llm.Response
	// Tier answered; empty for a passed-through model no tier names.
	Tier     string
	Provider string
	Route    RouteInfo
	Compress CompressInfo
	// Fallbacks lists the tiers that failed first.
	Fallbacks             []Fallback
	CostUSD               float64
	BaselineCostUSD       float64
	ContextTokens         int
	BaselineContextTokens int
}

// Complete answers a gateway request. With onDelta non-nil the answer is
// streamed to it. A model the gateway does not serve is ErrModelNotFound
// unless Config.PassThroughModels; a parameter a provider the request may
// reach does not take is an *UnsupportedError.
func (s *Service) Complete(ctx context.Context, req CompletionRequest, onDelta llm.DeltaFunc) (*Completion, error) {
	if len(req.Messages) == 0 {
		return nil, &InputError{"messages", "at least one message is required"}
	}
	if req.Model == "" {
		return nil, &InputError{"model", "is required"}
	}
	tier, byTierName := s.tiers.Get(req.Model)
	if !byTierName && req.Model != ModelAuto {
		if t, ok := s.tiers.ByModel(req.Model); ok {
			tier = t
		} else if !s.cfg.PassThroughModels {
			return nil, fmt.Errorf("%w: %q", ErrModelNotFound, req.Model)
		}
		provider := s.cfg.DefaultProvider
		if tier != nil {
			provider = tier.Provider
		}
		if err := s.checkParams(&req, []string{provider}); err != nil {
			return nil, err
		}
		return s.passThrough(ctx, req, tier, onDelta)
	}
	// A routed request may fall back to any tier.
	if err := s.checkParams(&req, s.tiers.Providers()); err != nil {
		return nil, err
	}
	tools := usesTools(&req)
	lastUser := -1
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == llm.RoleUser {
			lastUser = i
			break
		}
	}
	last := req.Messages[len(req.Messages)-1]
	if last.Role != llm.RoleUser && (!tools || lastUser < 0) {
		return nil, &InputError{"messages", `the last message must have role "user" for routed models`}
	}
	query := req.Messages[lastUser].Content
	t := &turn{endpoint: "gateway", query: query, queryTokens: llm.CountTokens(query) + llm.MessageOverheadTokens,
		user: s.upstreamUser(req.User), maxTokens: req.MaxTokens, temperature: req.Temperature, params: req.Params, onDelta: onDelta, onAttempt: req.OnAttempt,
		timing: req.Timing}
	if byTierName {
		t.forcedTier = tier.Name
	}
	if tools {
		// Tool calls and their results must stay paired: the
		// conversation goes verbatim, uncompressed.
		t.verbatim = req.Messages
	}
	t.history = make([]histMsg, lastUser)
	for i, m := range req.Messages[:lastUser] {
		t.history[i] = histMsg{role: m.Role, text: m.Content, tokens: llm.CountTokens(m.Content) + llm.MessageOverheadTokens}
	}
	out, err := s.run(ctx, t)
	if err != nil {
		return nil, err
	}
	return &Completion{Response: out.resp, Tier: out.tier.Name, Provider: out.provider, Route: out.route, Compress: out.compress,
		Fallbacks: out.fallbacks, CostUSD: out.costUSD, BaselineCostUSD: out.baselineCostUSD,
		ContextTokens: out.contextTokens, BaselineContextTokens: out.baselineContextTokens}, nil
}

// passThrough sends the conversation verbatim to one model: no routing,
// no compression, no fallback (the caller asked for that model).
func (s *Service) passThrough(ctx context.Context, req CompletionRequest, tier *llm.Tier, onDelta llm.DeltaFunc) (*Completion, error) {
	provider := s.cfg.DefaultProvider
	if tier != nil {
		provider = tier.Provider
	}
	p := s.providers[provider]
	lr := &llm.Request{Model: req.Model, Messages: req.Messages, MaxTokens: req.MaxTokens, Temperature: req.Temperature, User: s.upstreamUser(req.User), Params: req.Params}
	if lr.MaxTokens == 0 && tier != nil {
		lr.MaxTokens = tier.MaxOutputTokens
	}
	if req.OnAttempt != nil {
		name := ""
		if tier != nil {
			name = tier.Name
		}
		req.OnAttempt(name, req.Model)
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	first := firstToken(start, req.Timing, onDelta)
	var sent strings.Builder // what reached the caller, billed if the stream breaks
	delta := first.delta
	if delta != nil {
		delta = func(d string) error {
			sent.WriteString(d)
			return first.delta(d)
		}
	}
	resp, err := p.Complete(cctx, lr, delta)
	ev := CallEvent{Purpose: PurposeAnswer, Provider: p.Name(), Model: req.Model, Latency: time.Since(start), Err: err}
	first.done(ev.Latency, &ev)
	first.chunked(&ev)
	tev := TurnEvent{Endpoint: "gateway", Model: req.Model, Latency: ev.Latency}
	if tier != nil {
		ev.Tier, tev.RoutedTier, tev.Tier = tier.Name, tier.Name, tier.Name
	}
	ctxTokens := llm.CountMessages("", req.Messages)
	tev.ContextTokens, tev.BaselineContextTokens = ctxTokens, ctxTokens
	if err != nil {
		s.recordCall(ev)
		tev.Failed = true
		s.recordTurn(tev)
		err = fmt.Errorf("chat: model %s: %w", req.Model, err)
		if sent.Len() > 0 {
			u := llm.Usage{InputTokens: ctxTokens, OutputTokens: llm.CountTokens(sent.String())}
			pe := &PartialError{Err: err, Model: req.Model, Usage: u}
			if tier != nil {
				pe.Tier, pe.CostUSD = tier.Name, tier.PriceAt(s.now()).Cost(u)
			} else {
				premium, _ := s.tiers.Get(llm.TierPremium)
				pe.CostUSD = premium.PriceAt(s.now()).Cost(u)
			}
			return nil, pe
		}
		return nil, err
	}
	c := &Completion{Response: resp, Provider: p.Name(), Route: RouteInfo{Reason: "model requested", Outcome: "none"},
		Fallbacks: []Fallback{}, ContextTokens: ctxTokens, BaselineContextTokens: ctxTokens}
	now := s.now()
	premium, _ := s.tiers.Get(llm.TierPremium)
	c.BaselineCostUSD = premium.PriceAt(now).Cost(resp.Usage)
	if tier != nil {
		c.Tier, c.Route.Tier = tier.Name, tier.Name
		c.CostUSD = tier.PriceAt(now).Cost(resp.Usage)
	} else {
		// Unknown price: count it at the baseline so no saving is claimed.
		c.CostUSD = c.BaselineCostUSD
	}
	ev.Usage, ev.CostUSD = resp.Usage, c.CostUSD
	s.recordCall(ev)
	tev.CostUSD, tev.BaselineCostUSD, tev.Simulated = c.CostUSD, c.BaselineCostUSD, resp.Simulated
	s.recordTurn(tev)
	return c, nil
}
