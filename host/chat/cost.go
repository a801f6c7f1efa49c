package chat

import (
	"context"
)

// CostReport is the cost ledger of one session: what its answers cost,
// what the same conversation would have cost sent uncompressed to the
// premium tier, and the context tokens saved.
type CostReport struct {
	SessionID             string             `json:"session_id"`
	Turns                 int                `json:"turns"`
	CostUSD               float64            `json:"cost_usd"`
	BaselineCostUSD       float64            `json:"baseline_cost_usd"`
	SavedUSD              float64            `json:"saved_usd"`
	SavedPct              float64            `json:"saved_pct"`
	InputTokens           int                `json:"input_tokens"`
	OutputTokens          int                `json:"output_tokens"`
	CacheReadTokens       int                `json:"cache_read_tokens"`
	CacheWriteTokens      int                `json:"cache_write_tokens"`
	ContextTokens         int                `json:"context_tokens"`
	BaselineContextTokens int                `json:"baseline_context_tokens"`
	TokensSaved           int                `json:"tokens_saved"`
	Tiers                 map[string]int     `json:"tiers"`
	TierCostUSD           map[string]float64 `json:"tier_cost_usd"`
	// UnansweredMessages counts user messages no answer followed (every
	// tier was down).
	UnansweredMessages int `json:"unanswered_messages"`
}

// Cost returns the ledger of userID's session.
func (s *Service) Cost(ctx context.Context, userID int64, sessionID string) (CostReport, error) {
	r := CostReport{SessionID: sessionID, Tiers: map[string]int{}, TierCostUSD: map[string]float64{}}
	if _, err := s.Session(ctx, userID, sessionID); err != nil {
		return r, err
	}
	msgs, err := s.history(ctx, sessionID)
	if err != nil {
		return r, err
	}
	pendingUser := false
	for _, m := range msgs {
		switch m.Role {
		case "user":
			if pendingUser {
				r.UnansweredMessages++
			}
			pendingUser = true
		case "assistant":
			pendingUser = false
			if m.Tier == "" {
				continue // imported history, not answered here
			}
			r.Turns++
			r.CostUSD += m.CostUSD
			r.BaselineCostUSD += m.BaselineCostUSD
			r.InputTokens += m.InputTokens
			r.OutputTokens += m.OutputTokens
			r.CacheReadTokens += m.CacheReadTokens
			r.CacheWriteTokens += m.CacheWriteTokens
			r.ContextTokens += m.ContextTokens
			r.BaselineContextTokens += m.BaselineContextTokens
			r.Tiers[m.Tier]++
			r.TierCostUSD[m.Tier] += m.CostUSD
		}
	}
	if pendingUser {
		r.UnansweredMessages++
	}
	r.SavedUSD = r.BaselineCostUSD - r.CostUSD
	if r.BaselineCostUSD > 0 {
		r.SavedPct = 100 * r.SavedUSD / r.BaselineCostUSD
	}
	r.TokensSaved = r.BaselineContextTokens - r.ContextTokens
	return r, nil
}
