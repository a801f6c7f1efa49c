package observe

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/wingman-app/wingate/host/observe/event"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Floats is a series of values in which NaN means "no data"; it encodes
// NaN as JSON null.
type Floats []float64

// MarshalJSON encodes the series with null for NaN.
func (f Floats) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 8*len(f)+2)
	b = append(b, '[')
	for i, v := range f {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, v, 'g', 6, 64)
	}
	return append(b, ']'), nil
}

var _ json.Marshaler = Floats(nil)

// Snapshot is the state of the process for the dashboard: rolling-window
// figures of every part, JSON-encodable.
type Snapshot struct {
	Time     time.Time        `json:"time"`
	UptimeS  float64          `json:"uptime_s"`
	Requests RequestsSnapshot `json:"requests"`
	Cache    CacheSnapshot    `json:"cache"`
	Pool     *event.PoolStats `json:"pool"` // nil without a database pool
	Policies []PolicySnapshot `json:"policies"`
	AI       AISnapshot       `json:"ai"`
}

// RequestsSnapshot is HTTP traffic, in total and per route.
type RequestsSnapshot struct {
	// Rate is requests per second over the last minute.
	Rate float64 `json:"rate"`
	// PerSecond counts all requests in each of the last 60 seconds.
	PerSecond Floats          `json:"per_second"`
	Routes    []RouteSnapshot `json:"routes"`
}

// RouteSnapshot is one route's rolling windows.
type RouteSnapshot struct {
	Method    string       `json:"method"`
	Route     string       `json:"route"`
	M1        LatencyStats `json:"m1"`
	M5        LatencyStats `json:"m5"`
	PerSecond Floats       `json:"per_second"` // last 60 s
	P95       Floats       `json:"p95"`        // per 10 s over the last 5 min, seconds
}

// CacheSnapshot is cache effectiveness over the last five minutes.
type CacheSnapshot struct {
	Redis  RedisStatus  `json:"redis"`
	Routes []CacheRoute `json:"routes"`
}

// CacheRoute is one route's cache figures: overall and by tier.
type CacheRoute struct {
	Route string `json:"route"`
	// Lookups are requests the policy let the cache serve (not bypassed).
	Lookups uint64 `json:"lookups"`
	Bypass  uint64 `json:"bypass"`
	Misses  uint64 `json:"misses"`
	// HitRatio is the share of lookups served from any tier (fresh or
	// stale); 0 without lookups.
	HitRatio float64 `json:"hit_ratio"`
	// Tiers holds the in-process tier and, with Redis, the Redis tier:
	// each tier's ratio is over the lookups that reached it.
	Tiers []CacheTier `json:"tiers"`
}

// CacheTier is one tier of one route.
type CacheTier struct {
	Tier     string  `json:"tier"`
	Lookups  uint64  `json:"lookups"`
	Hits     uint64  `json:"hits"`
	Stale    uint64  `json:"stale"`
	HitRatio float64 `json:"hit_ratio"`
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func cacheRoute(route string, v []uint64, redis bool) CacheRoute {
	served := v[cLocalHit] + v[cLocalStale] + v[cRedisHit] + v[cRedisStale]
	r := CacheRoute{Route: route, Bypass: v[cBypass], Misses: v[cMiss], Lookups: served + v[cMiss]}
	r.HitRatio = ratio(served, r.Lookups)
	local := CacheTier{Tier: TierLocal, Lookups: r.Lookups, Hits: v[cLocalHit], Stale: v[cLocalStale]}
	local.HitRatio = ratio(local.Hits+local.Stale, local.Lookups)
	r.Tiers = append(r.Tiers, local)
	if redis || v[cRedisHit]+v[cRedisStale] > 0 {
		rt := CacheTier{Tier: TierRedis, Lookups: r.Lookups - local.Hits - local.Stale, Hits: v[cRedisHit], Stale: v[cRedisStale]}
		rt.HitRatio = ratio(rt.Hits+rt.Stale, rt.Lookups)
		r.Tiers = append(r.Tiers, rt)
	}
	return r
}

// PolicySnapshot is one policy kind: the active version and its
// decisions over the last five minutes.
type PolicySnapshot struct {
	ActivePolicy
	Decisions     uint64            `json:"decisions"`
	Rate          float64           `json:"rate"`
	P50           float64           `json:"p50"`
	P99           float64           `json:"p99"`
	Fallbacks     uint64            `json:"fallbacks"` // every outcome but ok
	FallbackRatio float64           `json:"fallback_ratio"`
	Outcomes      map[string]uint64 `json:"outcomes"` // since start
}

// AISnapshot is model usage against the baseline: over the last five
// minutes and since the process started.
type AISnapshot struct {
	Window AIFigures   `json:"window"`
	Total  AIFigures   `json:"total"`
	Tiers  []AIFigures `json:"tiers"` // since start, one per tier
}

// AIFigures are usage figures of a set of model calls.
type AIFigures struct {
	Tier        string  `json:"tier,omitempty"`
	Turns       uint64  `json:"turns"` // messages answered
	Calls       uint64  `json:"calls"` // model calls (answers and summaries)
	CostUSD     float64 `json:"cost_usd"`
	BaselineUSD float64 `json:"baseline_usd"`
	SavedUSD    float64 `json:"saved_usd"`
	SavingRatio float64 `json:"saving_ratio"` // 1 - cost/baseline; 0 without a baseline
	TokensIn    uint64  `json:"tokens_in"`
	TokensOut   uint64  `json:"tokens_out"`
	TokensSaved uint64  `json:"tokens_saved"`
}

func aiFigures(tier string, v []uint64) AIFigures {
	f := AIFigures{
		Tier:        tier,
		Turns:       v[lTurns],
		Calls:       v[lCalls],
		CostUSD:     float64(v[lCostNano]) / 1e9,
		BaselineUSD: float64(v[lBaselineNano]) / 1e9,
		TokensIn:    v[lTokensIn],
		TokensOut:   v[lTokensOut],
		TokensSaved: v[lTokensSaved],
	}
	f.SavedUSD = f.BaselineUSD - f.CostUSD
	if f.BaselineUSD > 0 {
		f.SavingRatio = f.SavedUSD / f.BaselineUSD
	}
	return f
}

// Snapshot computes the dashboard's view of the process now.
func (m *Metrics) Snapshot() Snapshot {
	now := m.now()
	s := Snapshot{Time: now, UptimeS: now.Sub(m.started).Seconds()}

	total := make(Floats, fineSlots)
	m.routeWins.each(func(k routeKey, w *routeWindow) {
		r := RouteSnapshot{
			Method:    k.method,
			Route:     k.route,
			M1:        w.lat.Stats(now, time.Minute),
			M5:        w.lat.Stats(now, 5*time.Minute),
			PerSecond: w.lat.PerSecond(now, fineSlots),
			P95:       w.lat.QuantileSeries(now, 0.95, coarseSlots),
		}
		for i, v := range r.PerSecond {
			total[i] += v
		}
		s.Requests.Rate += r.M1.Rate
		s.Requests.Routes = append(s.Requests.Routes, r)
	})
	s.Requests.PerSecond = total
	sort.Slice(s.Requests.Routes, func(i, j int) bool {
		a, b := s.Requests.Routes[i], s.Requests.Routes[j]
		if a.M5.Count != b.M5.Count {
			return a.M5.Count > b.M5.Count
		}
		return a.Route+a.Method < b.Route+b.Method
	})

	s.Cache.Redis = m.Redis()
	m.cacheSeries.each(func(route string, c *cacheSeries) {
		s.Cache.Routes = append(s.Cache.Routes, cacheRoute(route, c.win.Sums(now, maxWindow), s.Cache.Redis.Configured))
	})
	sort.Slice(s.Cache.Routes, func(i, j int) bool { return s.Cache.Routes[i].Route < s.Cache.Routes[j].Route })

	if st, ok := m.Pool(); ok {
		s.Pool = &st
	}

	s.Policies = m.policySnapshots(now)

	tierTotal := make([]uint64, lFields)
	winTotal := make([]uint64, lFields)
	m.llmTiers.each(func(tier string, t *llmTier) {
		v := make([]uint64, lFields)
		for i := range v {
			v[i] = t.total[i].Load()
			tierTotal[i] += v[i]
		}
		for i, x := range t.win.Sums(now, maxWindow) {
			winTotal[i] += x
		}
		s.AI.Tiers = append(s.AI.Tiers, aiFigures(tier, v))
	})
	sort.Slice(s.AI.Tiers, func(i, j int) bool { return tierRank(s.AI.Tiers[i].Tier) < tierRank(s.AI.Tiers[j].Tier) })
	s.AI.Total = aiFigures("", tierTotal)
	s.AI.Window = aiFigures("", winTotal)
	return s
}

func (m *Metrics) policySnapshots(now time.Time) []PolicySnapshot {
	byKind := map[string]*PolicySnapshot{}
	var out []PolicySnapshot
	for _, a := range m.activePolicies() {
		byKind[a.Kind] = &PolicySnapshot{ActivePolicy: a}
	}
	// Outcomes since start, from the decision counters.
	outcomes := map[string]map[string]uint64{}
	m.policySeries.each(func(k policyKey, s *policySeries) {
		if outcomes[k.kind] == nil {
			outcomes[k.kind] = map[string]uint64{}
		}
		outcomes[k.kind][k.outcome] += s.count.Load()
	})
	m.policyKinds.each(func(kind string, k *policyKind) {
		p := byKind[kind]
		if p == nil {
			pol, ver, since := k.latest()
			p = &PolicySnapshot{ActivePolicy: ActivePolicy{Kind: kind, Policy: pol, Version: ver, Since: since}}
			byKind[kind] = p
		}
		st := k.lat.Stats(now, maxWindow)
		p.Decisions = st.Count
		p.Rate = k.lat.Stats(now, time.Minute).Rate
		p.P50, p.P99 = st.P50, st.P99
		p.Fallbacks = st.Errors
		p.Outcomes = outcomes[kind]
		if st.Count > 0 {
			p.FallbackRatio = float64(p.Fallbacks) / float64(st.Count)
		}
	})
	for _, p := range byKind {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return kindRank(out[i].Kind) < kindRank(out[j].Kind) })
	return out
}

func tierRank(t string) string {
	if at, ok := abi.ParseTier(t); ok {
		return string(rune('0' + at))
	}
	return "3" + t
}

func kindRank(k string) string {
	if ak, ok := abi.ParseKind(k); ok {
		return string(rune('0' + ak - 1))
	}
	return "3" + k
}
