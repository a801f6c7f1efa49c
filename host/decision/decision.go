// Package decision holds the types of a policy decision: the Decider
// interface the request path calls, the Result that attributes a decision
// and the Outcome that says how it was reached, with each kind's
// fail-open decision.
//
// It imports only the ABI's value types (sdk/abi), never a runtime: the
// wazero engine (host/policy) and the rollout manager (host/rollout)
// implement Decider, and the packages that only consume decisions (chat,
// observe, the server's middleware) depend on this package alone.
package decision

import (
	"context"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Outcome says how a decision was reached.
type Outcome uint8

const (
	// OutcomeOK: the policy answered.
	OutcomeOK Outcome = iota
	// OutcomeFallback: the policy failed (bad decision, error status, no
	// instance, quarantined version) and the kind's fail-open decision was used.
	OutcomeFallback
	// OutcomeTimeout: the policy overran its deadline and was stopped.
	OutcomeTimeout
	// OutcomeTrap: the guest trapped or exited.
	OutcomeTrap
)

// String returns the outcome's metric label.
func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeFallback:
		return "fallback"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeTrap:
		return "trap"
	}
	return "unknown"
}

// Result describes one decision for metrics, logs and response attribution.
type Result struct {
	Kind     abi.Kind
	Policy   string // policy name from the policies file
	Version  string // short digest of the module that answered
	Outcome  Outcome
	Duration time.Duration
}

// Decider makes decisions of every kind. Its methods never fail: on any
// policy fault they return the kind's fail-open decision and say so in the
// Result. Implementations are safe for concurrent use.
type Decider interface {
	Cache(ctx context.Context, req *abi.CacheRequest) (abi.CacheDecision, Result)
	Route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, Result)
	Compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, Result)
}

// FallbackCache is the cache kind's fail-open decision: bypass the cache.
func FallbackCache() abi.CacheDecision { return abi.CacheDecision{Action: abi.CacheBypass} }

// FallbackRoute is the route kind's fail-open decision: the default tier.
func FallbackRoute(defaultTier abi.Tier) abi.RouteDecision {
	return abi.RouteDecision{Tier: defaultTier, Score: 0.5, Reason: "fallback: default tier"}
}

// FallbackCompress is the compress kind's fail-open decision: the most
// recent messages that fit the budget, no summary.
func FallbackCompress(req *abi.CompressRequest) abi.CompressDecision {
	var d abi.CompressDecision
	used := uint32(0)
	i := len(req.Messages) - 1
	for ; i >= 0; i-- {
		t := req.Messages[i].Tokens
		if used+t > req.BudgetTokens || used+t < used {
			break
		}
		used += t
	}
	for j := i + 1; j < len(req.Messages); j++ {
		d.Keep = append(d.Keep, uint32(j))
	}
	d.Tokens = used
	return d
}

// Fallback is a Decider that answers every kind with its fail-open
// decision, attributed as OutcomeFallback; Tier is the route fallback.
// It serves where no policy engine is configured.
type Fallback struct{ Tier abi.Tier }

var _ Decider = Fallback{}

// Cache returns FallbackCache.
func (f Fallback) Cache(context.Context, *abi.CacheRequest) (abi.CacheDecision, Result) {
	return FallbackCache(), Result{Kind: abi.KindCache, Outcome: OutcomeFallback}
}

// Route returns FallbackRoute with f's tier.
func (f Fallback) Route(context.Context, *abi.RouteRequest) (abi.RouteDecision, Result) {
	return FallbackRoute(f.Tier), Result{Kind: abi.KindRoute, Outcome: OutcomeFallback}
}

// Compress returns FallbackCompress.
func (f Fallback) Compress(_ context.Context, req *abi.CompressRequest) (abi.CompressDecision, Result) {
	return FallbackCompress(req), Result{Kind: abi.KindCompress, Outcome: OutcomeFallback}
}
