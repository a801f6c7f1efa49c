package chat

import (
	"time"

	"github.com/wingman-app/wingate/host/llm"
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

// Call purposes.
const (
	PurposeAnswer  = "answer"  // a chat or gateway answer
	PurposeSummary = "summary" // a summary of dropped history
)

// CallEvent describes one provider call.
type CallEvent struct {
	Purpose  string // PurposeAnswer or PurposeSummary
	Tier     string // tier the call was made for; empty for a passed-through model
	Provider string
	Model    string
	Usage    llm.Usage
	CostUSD  float64
	Latency  time.Duration
	// Err is nil on success; ErrKind is its llm.Kind label.
	Err     error
	ErrKind string
}

// TurnEvent describes one answered (or failed) message.
type TurnEvent struct {
	Endpoint string // "chat" or "gateway"
	// RoutedTier is what the route policy chose; Tier is what answered
	// (different after a fallback; empty when every tier failed).
	RoutedTier string
	Tier       string
	Model      string
	Fallbacks  int
	Failed     bool
	Simulated  bool
	// CostUSD includes any summary written for the turn;
	// BaselineCostUSD is the same turn uncompressed on the premium tier.
	CostUSD         float64
	BaselineCostUSD float64
	// ContextTokens is what was sent; BaselineContextTokens what the
	// uncompressed conversation would have sent.
	ContextTokens         int
	BaselineContextTokens int
	Latency               time.Duration
}

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
