package chat

import (
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/observe/event"
)

// Observer receives the chat's measurable events (LLM usage, cost and
// savings, fallbacks). The metrics layer implements it; a nil Observer is
// a no-op. Methods are called synchronously on the request path and must
// be fast and safe for concurrent use.
type Observer interface {
	// LLMCall is reported for every provider call, failed or not.
	LLMCall(CallEvent)
	// Turn is reported once per message answered or failed.
	Turn(TurnEvent)
}

// Call purposes (CallEvent.Purpose).
const (
	PurposeAnswer  = event.PurposeAnswer
	PurposeSummary = event.PurposeSummary
)

// CallEvent describes one provider call (event.CallEvent).
type CallEvent = event.CallEvent

// TurnEvent describes one answered or failed message (event.TurnEvent).
type TurnEvent = event.TurnEvent

// TierStats counts the turns a tier answered and what they cost.
type TierStats struct {
	Turns   int64   `json:"turns"`
	CostUSD float64 `json:"cost_usd"`
}

// Stats is a snapshot of the service's counters since start.
type Stats struct {
	Turns                 int64                `json:"turns"`
	Failed                int64                `json:"failed"`
	Fallbacks             int64                `json:"fallbacks"`
	Summaries             int64                `json:"summaries"`
	SummariesReused       int64                `json:"summaries_reused"`
	CostUSD               float64              `json:"cost_usd"`
	BaselineCostUSD       float64              `json:"baseline_cost_usd"`
	ContextTokens         int64                `json:"context_tokens"`
	BaselineContextTokens int64                `json:"baseline_context_tokens"`
	Tiers                 map[string]TierStats `json:"tiers"`
}

// Stats returns a snapshot of the counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.Tiers = make(map[string]TierStats, len(s.stats.Tiers))
	for k, v := range s.stats.Tiers {
		out.Tiers[k] = v
	}
	return out
}

func (s *Service) recordCall(ev CallEvent) {
	if ev.Err != nil {
		ev.ErrKind = llm.AsError(ev.Provider, ev.Err).Kind.String()
	}
	if s.obs != nil {
		s.obs.LLMCall(ev)
	}
}

func (s *Service) recordTurn(ev TurnEvent) {
	s.mu.Lock()
	s.stats.Turns++
	s.stats.Fallbacks += int64(ev.Fallbacks)
	if ev.Failed {
		s.stats.Failed++
	} else {
		s.stats.CostUSD += ev.CostUSD
		s.stats.BaselineCostUSD += ev.BaselineCostUSD
		s.stats.ContextTokens += int64(ev.ContextTokens)
		s.stats.BaselineContextTokens += int64(ev.BaselineContextTokens)
		ts := s.stats.Tiers[ev.Tier]
		ts.Turns++
		ts.CostUSD += ev.CostUSD
		s.stats.Tiers[ev.Tier] = ts
	}
	s.mu.Unlock()
	if s.obs != nil {
		s.obs.Turn(ev)
	}
}

func (s *Service) countSummary(reused bool) {
	s.mu.Lock()
	if reused {
		s.stats.SummariesReused++
	} else {
		s.stats.Summaries++
	}
	s.mu.Unlock()
}
