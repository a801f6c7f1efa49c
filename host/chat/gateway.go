package chat

import (
	"context"
	"fmt"
	"time"

	"github.com/wingman-app/wingate/host/llm"
)

// ModelAuto is the gateway model name that routes and compresses.
const ModelAuto = "auto"

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
	User        string
	// OnAttempt, when set, is called before each provider call with the
	// tier (empty for a passed-through model) and model about to answer,
	// so a streaming caller can label its chunks.
	OnAttempt func(tier, model string)
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
// streamed to it.
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
		}
		return s.passThrough(ctx, req, tier, onDelta)
	}
	last := req.Messages[len(req.Messages)-1]
	if last.Role != llm.RoleUser {
		return nil, &InputError{"messages", `the last message must have role "user" for routed models`}
	}
	t := &turn{endpoint: "gateway", query: last.Content, queryTokens: llm.CountTokens(last.Content) + llm.MessageOverheadTokens,
		user: req.User, maxTokens: req.MaxTokens, temperature: req.Temperature, onDelta: onDelta, onAttempt: req.OnAttempt}
	if byTierName {
		t.forcedTier = tier.Name
	}
	t.history = make([]histMsg, len(req.Messages)-1)
	for i, m := range req.Messages[:len(req.Messages)-1] {
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
	lr := &llm.Request{Model: req.Model, Messages: req.Messages, MaxTokens: req.MaxTokens, Temperature: req.Temperature, User: req.User}
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
	resp, err := p.Complete(cctx, lr, onDelta)
	ev := CallEvent{Purpose: PurposeAnswer, Provider: p.Name(), Model: req.Model, Latency: time.Since(start), Err: err}
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
		return nil, fmt.Errorf("chat: model %s: %w", req.Model, err)
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
