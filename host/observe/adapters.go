package observe

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// CacheObserver returns m as the response cache's observer.
func (m *Metrics) CacheObserver() cache.Observer { return cacheObserver{m} }

type cacheObserver struct{ m *Metrics }

var _ cache.Observer = cacheObserver{}

// CacheEvent records one request's cache outcome.
func (o cacheObserver) CacheEvent(route string, tier cache.Tier, ev cache.Event) {
	ti := 3
	switch tier {
	case cache.TierLocal:
		ti = 0
	case cache.TierRedis:
		ti = 1
	case cache.TierOrigin:
		ti = 2
	}
	ri := 1
	switch ev {
	case cache.EventHit:
		ri = 0
	case cache.EventStale:
		ri = 2
	case cache.EventBypass:
		ri = 3
	}
	o.m.observeCache(route, ti, ri)
}

// RedisState records the Redis tier going down (breaker open) or up.
func (o cacheObserver) RedisState(up bool) {
	if up {
		o.m.ObserveRedisBreaker(BreakerClosed)
		return
	}
	o.m.ObserveRedisBreaker(BreakerOpen)
}

// PolicyObserver returns m as the policy runtime's observer.
func (m *Metrics) PolicyObserver() policy.Observer { return policyObserver{m} }

type policyObserver struct{ m *Metrics }

var _ policy.Observer = policyObserver{}

// policyFastKey finds a decision's series from the engine's own values:
// two small integers and two strings to hash instead of four strings.
type policyFastKey struct {
	kind            abi.Kind
	outcome         policy.Outcome
	policy, version string
}

// Decision records one decision.
func (o policyObserver) Decision(kind abi.Kind, pol, version string, outcome policy.Outcome, d time.Duration) {
	m := o.m
	if m == nil {
		return
	}
	// The active version changes rarely: the series of the latest
	// decision of each kind and outcome is checked first (the engine
	// passes the same strings every time, so comparing them is cheap).
	var last *atomic.Pointer[policySeries]
	if int(kind) < len(m.policyLast) && int(outcome) < len(m.policyLast[0]) {
		last = &m.policyLast[kind][outcome]
		if s := last.Load(); s != nil && s.policy == pol && s.version == version {
			m.recordPolicy(s, d)
			return
		}
	}
	s, ok := m.policyFast.get(policyFastKey{kind, outcome, pol, version})
	if !ok {
		k := policyFastKey{kind, outcome, strings.Clone(pol), strings.Clone(version)}
		s = m.policyFast.getOrCreate(k, nil, func(policyFastKey) *policySeries {
			return m.newPolicySeries(policyKey{kind.String(), k.policy, k.version, outcome.String()})
		})
	}
	if last != nil {
		last.Store(s)
	}
	m.recordPolicy(s, d)
}

// InstanceCreated counts a new warm instance.
func (o policyObserver) InstanceCreated(pol, version string) {
	o.m.policyInstances.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("policy.name", pol), attribute.String("policy.version", version),
		attribute.String("event", "created"), attribute.String("reason", "")))
}

// InstanceDiscarded counts an instance thrown away, by reason.
func (o policyObserver) InstanceDiscarded(pol, version, reason string) {
	o.m.policyInstances.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("policy.name", pol), attribute.String("policy.version", version),
		attribute.String("event", "discarded"), attribute.String("reason", reason)))
}

// Quarantined counts and logs a version put in quarantine.
func (o policyObserver) Quarantined(kind abi.Kind, pol, version string) {
	o.m.policyQuarantines.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("policy.kind", kind.String()), attribute.String("policy.name", pol), attribute.String("policy.version", version)))
}

// EngineActive adapts the policy engine's List to SetActivePolicies.
func EngineActive(e *policy.Engine) func() []ActivePolicy {
	return func() []ActivePolicy {
		var out []ActivePolicy
		for _, a := range e.List() {
			p := ActivePolicy{Kind: a.Kind.String(), Policy: a.Stats.Policy, Version: a.Stats.Version}
			p.Quarantined = a.Quarantined
			out = append(out, p)
		}
		return out
	}
}

// ChatObserver returns m as the AI chat's observer.
func (m *Metrics) ChatObserver() chat.Observer { return chatObserver{m} }

type chatObserver struct{ m *Metrics }

var _ chat.Observer = chatObserver{}

// LLMCall records one provider call.
func (o chatObserver) LLMCall(ev chat.CallEvent) {
	o.m.ObserveLLMCall(LLMCall{
		Tier: ev.Tier, Model: ev.Model,
		InputTokens: ev.Usage.InputTokens, OutputTokens: ev.Usage.OutputTokens,
		CacheReadTokens: ev.Usage.CacheReadTokens, CacheWriteTokens: ev.Usage.CacheWriteTokens,
		CostUSD: ev.CostUSD, Failed: ev.Err != nil,
	})
}

// Turn records one answered message against its baseline.
func (o chatObserver) Turn(ev chat.TurnEvent) {
	o.m.ObserveLLMTurn(LLMTurn{
		Tier: ev.Tier, CostUSD: ev.CostUSD, BaselineCostUSD: ev.BaselineCostUSD,
		ContextTokens: ev.ContextTokens, BaselineContextTokens: ev.BaselineContextTokens, Failed: ev.Failed,
	})
}
