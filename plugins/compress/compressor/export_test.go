package compressor

import "github.com/wingman-app/wingate/sdk/abi"

// Scores exposes the smoothed relevance scores to the evaluation's
// diagnostics.
func (c *Compressor) Scores(msgs []abi.Message, query string) []float64 {
	a, _, s := c.score(msgs, query)
	out := append([]float64(nil), s...)
	c.release(a)
	return out
}

func abiRequest(msgs []abi.Message, q string, budget uint32) abi.CompressRequest {
	return abi.CompressRequest{Messages: msgs, Query: q, BudgetTokens: budget}
}
