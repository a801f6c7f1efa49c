package observe

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wingman-app/wingate/host/store"
)

// Cache results, the values of the cache.result label.
const (
	CacheHit   = "hit"
	CacheMiss  = "miss"
	CacheStale = "stale"
)

type cacheKey struct {
	route string
	tier  string
}

type cacheSeries struct {
	hit, miss, stale []metric.AddOption
	win              *Counters // hit, miss, stale
}

const (
	cHit = iota
	cMiss
	cStale
	cFields
)

// ObserveCache records one cache lookup of route (template) at tier
// (such as "memory" or "redis"): result is CacheHit, CacheMiss or
// CacheStale.
func (m *Metrics) ObserveCache(route, tier, result string) {
	if m == nil {
		return
	}
	s, ok := m.cacheSeries.get(cacheKey{route, tier})
	if !ok {
		s = m.cacheSeries.getOrCreate(cacheKey{strings.Clone(route), strings.Clone(tier)},
			func() cacheKey { return cacheKey{otherLabel, tier} },
			func(k cacheKey) *cacheSeries {
				lbl := func(r string) []metric.AddOption {
					return addOpt(attribute.String("http.route", k.route), attribute.String("cache.tier", k.tier), attribute.String("cache.result", r))
				}
				return &cacheSeries{hit: lbl(CacheHit), miss: lbl(CacheMiss), stale: lbl(CacheStale), win: NewCounters(cFields)}
			})
	}
	ctx := context.Background()
	switch result {
	case CacheHit:
		m.cacheReqs.Add(ctx, 1, s.hit...)
		s.win.Add(m.now(), cHit, 1)
	case CacheStale:
		m.cacheReqs.Add(ctx, 1, s.stale...)
		s.win.Add(m.now(), cStale, 1)
	default:
		m.cacheReqs.Add(ctx, 1, s.miss...)
		s.win.Add(m.now(), cMiss, 1)
	}
}

// Redis breaker states, the values of the state label.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half_open"
	BreakerOpen     = "open"
)

var breakerStates = [...]string{BreakerClosed, BreakerHalfOpen, BreakerOpen}

// ObserveRedisBreaker records a change of the Redis circuit breaker's
// state (BreakerClosed, BreakerHalfOpen or BreakerOpen; "half-open" is
// accepted too). The first call also marks Redis as configured.
func (m *Metrics) ObserveRedisBreaker(state string) {
	if m == nil {
		return
	}
	state = strings.ReplaceAll(strings.ToLower(state), "-", "_")
	m.redisMu.Lock()
	changed := !m.redisConfigured || m.redisState != state
	m.redisConfigured = true
	m.redisState = state
	if changed {
		m.redisChanged = m.now()
	}
	m.redisMu.Unlock()
	if changed {
		m.redisTransitions.Add(context.Background(), 1, metric.WithAttributes(attribute.String("state", state)))
	}
}

// RedisStatus is the Redis tier's state as last reported.
type RedisStatus struct {
	Configured bool      `json:"configured"`
	Up         bool      `json:"up"`
	State      string    `json:"state"`
	Since      time.Time `json:"since"`
}

// Redis returns the Redis tier's state.
func (m *Metrics) Redis() RedisStatus {
	m.redisMu.Lock()
	defer m.redisMu.Unlock()
	return RedisStatus{Configured: m.redisConfigured, Up: m.redisConfigured && m.redisState != BreakerOpen, State: m.redisState, Since: m.redisChanged}
}

func (m *Metrics) observeRedisUp(_ context.Context, o metric.Int64Observer) error {
	st := m.Redis()
	if !st.Configured {
		return nil
	}
	v := int64(0)
	if st.Up {
		v = 1
	}
	o.Observe(v)
	return nil
}

func (m *Metrics) observeRedisState(_ context.Context, o metric.Int64Observer) error {
	st := m.Redis()
	if !st.Configured {
		return nil
	}
	for _, s := range breakerStates {
		v := int64(0)
		if s == st.State {
			v = 1
		}
		o.Observe(v, metric.WithAttributes(attribute.String("state", s)))
	}
	return nil
}

// Policy decision outcomes, the values of the policy.outcome label (the
// strings of policy.Outcome).
var policyOutcomes = [...]string{"ok", "fallback", "timeout", "trap"}

type policyKey struct {
	kind, policy, version, outcome string
}

type policySeries struct {
	add    []metric.AddOption
	record []metric.RecordOption
	kind   *policyKind
	idx    int // outcome index in the kind's counters

	policy, version string
}

// policyKind holds the rolling windows of one policy kind.
type policyKind struct {
	kind     string
	lat      *Latency
	outcomes *Counters // one counter per policyOutcomes entry, then "unknown"
	last     atomicPolicy
}

// ObservePolicyDecision records one decision: its kind (cache, route,
// compress), the policy name and version that answered, the outcome (ok,
// fallback, timeout, trap) and how long it took.
func (m *Metrics) ObservePolicyDecision(kind, policy, version, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	s, ok := m.policySeries.get(policyKey{kind, policy, version, outcome})
	if !ok {
		s = m.newPolicySeries(policyKey{strings.Clone(kind), strings.Clone(policy), strings.Clone(version), strings.Clone(outcome)})
	}
	ctx := context.Background()
	m.policyDecisions.Add(ctx, 1, s.add...)
	m.policyDur.Record(ctx, d.Seconds(), s.record...)
	now := m.now()
	s.kind.lat.Record(now, d, s.idx != 0)
	s.kind.outcomes.Add(now, s.idx, 1)
	s.kind.last.store(s.policy, s.version, now)
}

func (m *Metrics) newPolicySeries(k policyKey) *policySeries {
	return m.policySeries.getOrCreate(k,
		func() policyKey { return policyKey{k.kind, k.policy, otherLabel, k.outcome} },
		func(k policyKey) *policySeries {
			pk := m.policyKinds.getOrCreate(k.kind, nil, func(kind string) *policyKind {
				return &policyKind{kind: kind, lat: NewLatency(), outcomes: NewCounters(len(policyOutcomes) + 1)}
			})
			idx := len(policyOutcomes)
			for i, o := range policyOutcomes {
				if o == k.outcome {
					idx = i
				}
			}
			return &policySeries{
				add: addOpt(attribute.String("policy.kind", k.kind), attribute.String("policy.name", k.policy),
					attribute.String("policy.version", k.version), attribute.String("policy.outcome", k.outcome)),
				record: recordOpt(attribute.String("policy.kind", k.kind), attribute.String("policy.version", k.version),
					attribute.String("policy.outcome", k.outcome)),
				kind:   pk,
				idx:    idx,
				policy: k.policy, version: k.version,
			}
		})
}

type queryKey struct {
	name    string
	outcome string
}

// ObserveQuery records the duration of one named database query; it
// implements store.QueryObserver.
func (m *Metrics) ObserveQuery(name string, d time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		outcome = "not_found"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		outcome = "canceled"
	default:
		outcome = "error"
	}
	opts, ok := m.querySeries.get(queryKey{name, outcome})
	if !ok {
		opts = m.querySeries.getOrCreate(queryKey{strings.Clone(name), outcome},
			func() queryKey { return queryKey{otherLabel, outcome} },
			func(k queryKey) []metric.RecordOption {
				return recordOpt(attribute.String("db.operation.name", k.name), attribute.String("db.response.outcome", k.outcome))
			})
	}
	m.queryDur.Record(context.Background(), d.Seconds(), opts...)
}

var _ store.QueryObserver = (*Metrics)(nil)

// LLMUsage is the usage of one model call, as the chat and the gateway
// account it.
type LLMUsage struct {
	InputTokens      int
	OutputTokens     int
	CacheReadTokens  int
	CacheWriteTokens int
	// CostUSD is what the call cost; BaselineCostUSD what it would have
	// cost on the baseline (the premium tier with the full context).
	CostUSD         float64
	BaselineCostUSD float64
	// ContextTokens went to the model as context; BaselineContextTokens
	// would have without compression.
	ContextTokens         int
	BaselineContextTokens int
}

type llmKey struct {
	tier, model string
}

type llmSeries struct {
	tier                           []metric.AddOption // tier and model
	tierOnly                       []metric.AddOption
	in, out, cacheRead, cacheWrite []metric.AddOption
	tierWin                        *llmTier
}

// llmTier holds one tier's rolling window and totals since start.
type llmTier struct {
	win   *Counters
	total [lFields]atomic.Uint64
}

func (t *llmTier) add(now time.Time, i int, v uint64) {
	t.win.Add(now, i, v)
	t.total[i].Add(v)
}

// Fields of the per-tier LLM windows.
const (
	lRequests = iota
	lCostNano
	lBaselineNano
	lTokensIn
	lTokensOut
	lTokensSaved
	lFields
)

// ObserveLLM records one model call of tier (economy, standard, premium)
// on model.
func (m *Metrics) ObserveLLM(tier, model string, u LLMUsage) {
	if m == nil {
		return
	}
	s, ok := m.llmSeries.get(llmKey{tier, model})
	if !ok {
		s = m.llmSeries.getOrCreate(llmKey{strings.Clone(tier), strings.Clone(model)},
			func() llmKey { return llmKey{tier, otherLabel} },
			func(k llmKey) *llmSeries {
				tm := []attribute.KeyValue{attribute.String("llm.tier", k.tier), attribute.String("llm.model", k.model)}
				tok := func(t string) []metric.AddOption {
					return addOpt(append(tm[:2:2], attribute.String("llm.token.type", t))...)
				}
				win := m.llmTiers.getOrCreate(k.tier, nil, func(string) *llmTier { return &llmTier{win: NewCounters(lFields)} })
				return &llmSeries{
					tier: addOpt(tm...), in: tok("input"), out: tok("output"),
					cacheRead: tok("cache_read"), cacheWrite: tok("cache_write"),
					tierOnly: addOpt(attribute.String("llm.tier", k.tier)),
					tierWin:  win,
				}
			})
	}
	ctx := context.Background()
	m.llmRequests.Add(ctx, 1, s.tier...)
	m.llmTokens.Add(ctx, int64(u.InputTokens), s.in...)
	m.llmTokens.Add(ctx, int64(u.OutputTokens), s.out...)
	if u.CacheReadTokens > 0 {
		m.llmTokens.Add(ctx, int64(u.CacheReadTokens), s.cacheRead...)
	}
	if u.CacheWriteTokens > 0 {
		m.llmTokens.Add(ctx, int64(u.CacheWriteTokens), s.cacheWrite...)
	}
	m.llmCost.Add(ctx, u.CostUSD, s.tier...)
	m.llmBaseline.Add(ctx, u.BaselineCostUSD, s.tier...)
	m.llmSaved.Add(ctx, u.BaselineCostUSD-u.CostUSD, s.tierOnly...)
	saved := max(u.BaselineContextTokens-u.ContextTokens, 0)
	m.llmTokensSaved.Add(ctx, int64(saved), s.tierOnly...)
	now := m.now()
	t := s.tierWin
	t.add(now, lRequests, 1)
	t.add(now, lCostNano, nano(u.CostUSD))
	t.add(now, lBaselineNano, nano(u.BaselineCostUSD))
	t.add(now, lTokensIn, uint64(max(u.InputTokens, 0)))
	t.add(now, lTokensOut, uint64(max(u.OutputTokens, 0)))
	t.add(now, lTokensSaved, uint64(saved))
}

func nano(usd float64) uint64 {
	if usd <= 0 {
		return 0
	}
	return uint64(usd*1e9 + 0.5)
}
