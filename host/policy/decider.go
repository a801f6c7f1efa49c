package policy

import (
	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The decision types live in host/decision, which imports no runtime;
// these aliases keep the engine's and its callers' spelling.
type (
	// Outcome is decision.Outcome.
	Outcome = decision.Outcome
	// Result is decision.Result.
	Result = decision.Result
	// Decider is decision.Decider.
	Decider = decision.Decider
)

// Outcomes; see decision.Outcome.
const (
	OutcomeOK, OutcomeFallback  = decision.OutcomeOK, decision.OutcomeFallback
	OutcomeTimeout, OutcomeTrap = decision.OutcomeTimeout, decision.OutcomeTrap
)

// FallbackCache is decision.FallbackCache.
func FallbackCache() abi.CacheDecision { return decision.FallbackCache() }

// FallbackRoute is decision.FallbackRoute.
func FallbackRoute(defaultTier abi.Tier) abi.RouteDecision {
	return decision.FallbackRoute(defaultTier)
}

// FallbackCompress is decision.FallbackCompress.
func FallbackCompress(req *abi.CompressRequest) abi.CompressDecision {
	return decision.FallbackCompress(req)
}
