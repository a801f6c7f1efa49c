package observe

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Cache results, the values of the cache.result label.
const (
	CacheHit    = "hit"
	CacheMiss   = "miss"
	CacheStale  = "stale"
	CacheBypass = "bypass"
)

// Cache tiers, the values of the cache.tier label: where a response came
// from.
const (
	TierLocal  = "local"
	TierRedis  = "redis"
	TierOrigin = "origin"
	TierNone   = "none"
)

var (
	cacheTiers   = [...]string{TierLocal, TierRedis, TierOrigin, TierNone}
	cacheResults = [...]string{CacheHit, CacheMiss, CacheStale, CacheBypass}
)

// cacheSeries holds one route's cache counters: pre-bound attribute sets
// for every tier and result, and a rolling window.
type cacheSeries struct {
	opts  [len(cacheTiers)][len(cacheResults)][]metric.ObserveOption
	total [len(cacheTiers)][len(cacheResults)]atomic.Uint64
	win   *Counters // cacheField
}

func (m *Metrics) observeCacheCounts(_ context.Context, o metric.Int64Observer) error {
	m.cacheSeries.each(func(_ string, s *cacheSeries) {
		for i := range s.total {
			for j := range s.total[i] {
				if v := s.total[i][j].Load(); v > 0 {
					o.Observe(int64(v), s.opts[i][j]...)
				}
			}
		}
	})
	return nil
}

// Fields of a route's cache window.
const (
	cLocalHit = iota
	cLocalStale
	cRedisHit
	cRedisStale
	cMiss
	cBypass
	cFields
)

func tierIndex(tier string) int {
	for i, t := range cacheTiers {
		if t == tier {
			return i
		}
	}
	return len(cacheTiers) - 1
}

func resultIndex(result string) int {
	for i, r := range cacheResults {
		if r == result {
			return i
		}
	}
	return 1
}

// ObserveCache records what happened to one request of route (template)
// at the cache: tier is where the response came from (TierLocal,
// TierRedis, TierOrigin, or TierNone for a bypass) and result is
// CacheHit, CacheMiss, CacheStale or CacheBypass.
func (m *Metrics) ObserveCache(route, tier, result string) {
	m.observeCache(route, tierIndex(tier), resultIndex(result))
}

func (m *Metrics) observeCache(route string, ti, ri int) {
	if m == nil {
		return
	}
	s, ok := m.cacheSeries.get(route)
	if !ok {
		s = m.cacheSeries.getOrCreate(strings.Clone(route),
			func() string { return otherLabel },
			func(r string) *cacheSeries {
				cs := &cacheSeries{win: newCoarseCounters(cFields)}
				for i, t := range cacheTiers {
					for j, res := range cacheResults {
						cs.opts[i][j] = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(
							attribute.String("http.route", r), attribute.String("cache.tier", t), attribute.String("cache.result", res)))}
					}
				}
				return cs
			})
	}
	s.total[ti][ri].Add(1)
	f := cMiss
	switch {
	case ri == 3 || ti == 3:
		f = cBypass
	case ri == 1:
		f = cMiss
	case ti == 0 && ri == 0:
		f = cLocalHit
	case ti == 0 && ri == 2:
		f = cLocalStale
	case ti == 1 && ri == 0:
		f = cRedisHit
	case ti == 1 && ri == 2:
		f = cRedisStale
	}
	s.win.Add(m.eventTime(), f, 1)
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
	count atomic.Uint64
	attrs []metric.ObserveOption
	hist  *atomicHist
	kind  *policyKind
	idx   int // outcome index in the kind's counters

	policy, version string
}

// policyKind holds the rolling window of one policy kind: durations, and
// decisions not answered by the policy as its errors.
type policyKind struct {
	kind string
	lat  *Latency
	// last is the series of the latest decision, since when it has been.
	last  atomic.Pointer[policySeries]
	since atomic.Int64
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
	m.recordPolicy(s, d)
}

func (m *Metrics) recordPolicy(s *policySeries, d time.Duration) {
	s.count.Add(1)
	s.hist.record(d)
	now := m.eventTime()
	s.kind.lat.Record(now, d, s.idx != 0)
	if s.kind.last.Load() != s {
		s.kind.last.Store(s)
		s.kind.since.Store(now.UnixNano())
	}
}

// latest returns the policy and version of the kind's latest decision.
func (k *policyKind) latest() (policy, version string, since time.Time) {
	if s := k.last.Load(); s != nil {
		return s.policy, s.version, time.Unix(0, k.since.Load())
	}
	return "", "", time.Time{}
}

func (m *Metrics) observePolicyCounts(_ context.Context, o metric.Int64Observer) error {
	m.policySeries.each(func(_ policyKey, s *policySeries) {
		o.Observe(int64(s.count.Load()), s.attrs...)
	})
	return nil
}

func (m *Metrics) newPolicySeries(k policyKey) *policySeries {
	return m.policySeries.getOrCreate(k,
		func() policyKey { return policyKey{k.kind, k.policy, otherLabel, k.outcome} },
		func(k policyKey) *policySeries {
			pk := m.policyKinds.getOrCreate(k.kind, nil, func(kind string) *policyKind {
				return &policyKind{kind: kind, lat: newCoarseLatency()}
			})
			idx := len(policyOutcomes)
			for i, o := range policyOutcomes {
				if o == k.outcome {
					idx = i
				}
			}
			return &policySeries{
				attrs: []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("policy.kind", k.kind), attribute.String("policy.name", k.policy),
					attribute.String("policy.version", k.version), attribute.String("policy.outcome", k.outcome)))},
				hist: m.policyDur.seriesFor(attribute.NewSet(attribute.String("policy.kind", k.kind),
					attribute.String("policy.version", k.version), attribute.String("policy.outcome", k.outcome))),
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

// ObserveQuery records the duration of one named database query and its
// outcome (store.QueryOutcome: ok, not_found, canceled, error); it
// implements store.QueryObserver.
func (m *Metrics) ObserveQuery(name string, d time.Duration, outcome string) {
	if m == nil {
		return
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

// LLMCall is one model call, as the chat and the gateway report it.
type LLMCall struct {
	Tier  string // economy, standard, premium; empty for a passed-through model
	Model string
	// Token counts of the call.
	InputTokens      int
	OutputTokens     int
	CacheReadTokens  int
	CacheWriteTokens int
	CostUSD          float64
	Failed           bool
	// Latency is how long the provider took to answer (or fail).
	Latency time.Duration
	// Provider names the provider (the GenAI conventions'
	// gen_ai.provider.name); ErrKind a failed call's error kind.
	Provider, ErrKind string
	// FirstChunk is a streamed call's time to its first chunk (zero for
	// a call not streamed, or failed).
	FirstChunk time.Duration
}

// LLMTurn is one answered (or failed) message: what it cost against the
// baseline (the premium tier with the uncompressed conversation).
type LLMTurn struct {
	Tier                  string // the tier that answered
	CostUSD               float64
	BaselineCostUSD       float64
	ContextTokens         int
	BaselineContextTokens int
	Failed                bool
}

type llmKey struct {
	tier, model, provider, errKind string
	failed                         bool
}

type llmCallSeries struct {
	req                            []metric.AddOption    // tier, model, outcome
	dur                            []metric.RecordOption // tier, model, outcome
	cost                           []metric.AddOption    // tier, model
	in, out, cacheRead, cacheWrite []metric.AddOption    // tier, model, type
	tier                           *llmTier
	// The GenAI conventions' attributes: operation, provider, request
	// model (and tier); with the token type; with error.type.
	genIn, genOut, genDur []metric.RecordOption
}

// llmTier holds one tier's rolling window, totals since start and
// pre-bound attribute sets of its turns.
type llmTier struct {
	win   *Counters
	total [lFields]atomic.Uint64
	turn  []metric.AddOption // tier
}

func (t *llmTier) add(now time.Time, i int, v uint64) {
	t.win.Add(now, i, v)
	t.total[i].Add(v)
}

// Fields of the per-tier LLM windows.
const (
	lTurns = iota
	lCostNano
	lBaselineNano
	lTokensSaved
	lCalls
	lTokensIn
	lTokensOut
	lFields
)

func tierLabel(t string) string {
	if t == "" {
		return "none"
	}
	return t
}

func (m *Metrics) llmTier(tier string) *llmTier {
	return m.llmTiers.getOrCreate(tier, func() string { return otherLabel }, func(t string) *llmTier {
		return &llmTier{win: NewCounters(lFields), turn: addOpt(attribute.String("llm.tier", t))}
	})
}

// ObserveLLMCall records one model call: its tokens by type and its cost.
func (m *Metrics) ObserveLLMCall(c LLMCall) {
	if m == nil {
		return
	}
	tier := tierLabel(c.Tier)
	errKind := ""
	if c.Failed {
		errKind = c.ErrKind
		if errKind == "" {
			errKind = "_OTHER"
		}
	}
	s, ok := m.llmSeries.get(llmKey{tier, c.Model, c.Provider, errKind, c.Failed})
	if !ok {
		s = m.llmSeries.getOrCreate(llmKey{strings.Clone(tier), strings.Clone(c.Model), strings.Clone(c.Provider), strings.Clone(errKind), c.Failed},
			func() llmKey { return llmKey{tier, otherLabel, otherLabel, errKind, c.Failed} },
			func(k llmKey) *llmCallSeries {
				tm := []attribute.KeyValue{attribute.String("llm.tier", k.tier), attribute.String("llm.model", k.model)}
				with := func(kv attribute.KeyValue) []metric.AddOption { return addOpt(append(tm[:2:2], kv)...) }
				outcome := "ok"
				if k.failed {
					outcome = "error"
				}
				series := &llmCallSeries{
					req: with(attribute.String("outcome", outcome)), cost: addOpt(tm...),
					dur: recordOpt(append(tm[:2:2], attribute.String("outcome", outcome))...),
					in:  with(attribute.String("llm.token.type", "input")), out: with(attribute.String("llm.token.type", "output")),
					cacheRead:  with(attribute.String("llm.token.type", "cache_read")),
					cacheWrite: with(attribute.String("llm.token.type", "cache_write")),
					tier:       m.llmTier(k.tier),
				}
				gen := []attribute.KeyValue{attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.provider.name", k.provider),
					attribute.String("gen_ai.request.model", k.model), attribute.String("llm.tier", k.tier)}
				series.genIn = recordOpt(append(gen[:4:4], attribute.String("gen_ai.token.type", "input"))...)
				series.genOut = recordOpt(append(gen[:4:4], attribute.String("gen_ai.token.type", "output"))...)
				if k.failed {
					gen = append(gen, attribute.String("error.type", k.errKind))
				}
				series.genDur = recordOpt(gen...)
				return series
			})
	}
	ctx := context.Background()
	m.llmRequests.Add(ctx, 1, s.req...)
	m.llmDur.Record(ctx, max(c.Latency, 0).Seconds(), s.dur...)
	m.llmTokens.Add(ctx, int64(max(c.InputTokens, 0)), s.in...)
	m.llmTokens.Add(ctx, int64(max(c.OutputTokens, 0)), s.out...)
	if c.CacheReadTokens > 0 {
		m.llmTokens.Add(ctx, int64(c.CacheReadTokens), s.cacheRead...)
	}
	if c.CacheWriteTokens > 0 {
		m.llmTokens.Add(ctx, int64(c.CacheWriteTokens), s.cacheWrite...)
	}
	if c.CostUSD > 0 {
		m.llmCost.Add(ctx, c.CostUSD, s.cost...)
	}
	m.genDur.Record(ctx, max(c.Latency, 0).Seconds(), s.genDur...)
	if !c.Failed {
		m.genTokens.Record(ctx, int64(max(c.InputTokens+c.CacheReadTokens+c.CacheWriteTokens, 0)), s.genIn...)
		m.genTokens.Record(ctx, int64(max(c.OutputTokens, 0)), s.genOut...)
		if c.FirstChunk > 0 {
			m.genTTFC.Record(ctx, c.FirstChunk.Seconds(), s.genDur...)
		}
	}
	now := m.eventTime()
	s.tier.add(now, lCalls, 1)
	s.tier.add(now, lTokensIn, uint64(max(c.InputTokens+c.CacheReadTokens+c.CacheWriteTokens, 0)))
	s.tier.add(now, lTokensOut, uint64(max(c.OutputTokens, 0)))
}

// ObserveLLMTurn records one answered message against its baseline. Failed
// turns cost nothing and are not counted.
func (m *Metrics) ObserveLLMTurn(t LLMTurn) {
	if m == nil || t.Failed {
		return
	}
	tier := tierLabel(t.Tier)
	lt, ok := m.llmTiers.get(tier)
	if !ok {
		lt = m.llmTier(strings.Clone(tier))
	}
	ctx := context.Background()
	saved := max(t.BaselineContextTokens-t.ContextTokens, 0)
	m.llmTurns.Add(ctx, 1, lt.turn...)
	m.llmBaseline.Add(ctx, t.BaselineCostUSD, lt.turn...)
	m.llmSaved.Add(ctx, t.BaselineCostUSD-t.CostUSD, lt.turn...)
	m.llmTokensSaved.Add(ctx, int64(saved), lt.turn...)
	now := m.eventTime()
	lt.add(now, lTurns, 1)
	lt.add(now, lCostNano, nano(t.CostUSD))
	lt.add(now, lBaselineNano, nano(t.BaselineCostUSD))
	lt.add(now, lTokensSaved, uint64(saved))
}

func nano(usd float64) uint64 {
	if usd <= 0 {
		return 0
	}
	return uint64(usd*1e9 + 0.5)
}
