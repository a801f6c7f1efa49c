package observe

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/host/observe/event"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The adapters below are how the observed packages register with the
// metrics: each implements the observed package's Observer interface
// through the shared vocabulary of host/observe/event (cache.Observer and
// chat.Observer have the method sets of event.Cache and event.Chat; the
// policy runtime's Observer speaks in sdk/abi and host/decision types), so
// this package imports none of the packages it observes.

// CacheObserver returns m as the response cache's observer (cache.Config.Observer).
func (m *Metrics) CacheObserver() event.Cache { return cacheObserver{m} }

type cacheObserver struct{ m *Metrics }

// CacheEvent records one request's cache outcome.
func (o cacheObserver) CacheEvent(route string, tier event.CacheTier, ev event.CacheResult) {
	ti := 3
	switch tier {
	case event.CacheTierLocal:
		ti = 0
	case event.CacheTierRedis:
		ti = 1
	case event.CacheTierOrigin:
		ti = 2
	}
	ri := 1
	switch ev {
	case event.CacheHit:
		ri = 0
	case event.CacheStale:
		ri = 2
	case event.CacheBypass:
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

// PolicySink is the policy runtime's observer (policy.Observer has this
// method set).
type PolicySink interface {
	Decision(kind abi.Kind, policy, version string, outcome decision.Outcome, d time.Duration)
	InstanceCreated(policy, version string)
	InstanceDiscarded(policy, version, reason string)
	Quarantined(kind abi.Kind, policy, version string)
}

// PolicyObserver returns m as the policy runtime's observer.
func (m *Metrics) PolicyObserver() PolicySink { return policyObserver{m} }

type policyObserver struct{ m *Metrics }

// policyFastKey finds a decision's series from the engine's own values:
// two small integers and two strings to hash instead of four strings.
type policyFastKey struct {
	kind            abi.Kind
	outcome         decision.Outcome
	policy, version string
}

// Decision records one decision.
func (o policyObserver) Decision(kind abi.Kind, pol, version string, outcome decision.Outcome, d time.Duration) {
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

// ChatObserver returns m as the AI chat's observer (chat.Config.Observer).
func (m *Metrics) ChatObserver() event.Chat { return chatObserver{m} }

type chatObserver struct{ m *Metrics }

// LLMCall records one provider call.
func (o chatObserver) LLMCall(ev event.CallEvent) {
	o.m.ObserveLLMCall(LLMCall{
		Tier: ev.Tier, Model: ev.Model,
		InputTokens: ev.Usage.InputTokens, OutputTokens: ev.Usage.OutputTokens,
		CacheReadTokens: ev.Usage.CacheReadTokens, CacheWriteTokens: ev.Usage.CacheWriteTokens,
		CostUSD: ev.CostUSD, Failed: ev.Err != nil, Latency: ev.Latency,
		Provider: ev.Provider, ErrKind: ev.ErrKind, FirstChunk: ev.FirstChunk,
	})
}

// Turn records one answered message against its baseline.
func (o chatObserver) Turn(ev event.TurnEvent) {
	o.m.ObserveLLMTurn(LLMTurn{
		Tier: ev.Tier, CostUSD: ev.CostUSD, BaselineCostUSD: ev.BaselineCostUSD,
		ContextTokens: ev.ContextTokens, BaselineContextTokens: ev.BaselineContextTokens, Failed: ev.Failed,
	})
}
