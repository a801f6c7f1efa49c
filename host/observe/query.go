package observe

import (
	"fmt"
	"sort"
	"time"
)

// Sample is one labelled value of a signal.
type Sample struct {
	Labels map[string]string `json:"labels"`
	Value  float64           `json:"value"`
}

// Query asks for one signal over a window.
type Query struct {
	// Signal names what is measured; see Signals.
	Signal string
	// Window is how far back the signal looks, 1 s to 5 min; zero means
	// one minute. Signals that are a current state ignore it.
	Window time.Duration
}

// Signals documents the signals Query answers: their labels and unit.
// Ratios are in [0, 1], durations in seconds. A signal with nothing to
// report (no traffic, no database pool, no Redis) returns no sample.
var Signals = map[string]string{
	"route_latency_p50":     "P50 request duration per route {method, route}, seconds",
	"route_latency_p95":     "P95 request duration per route {method, route}, seconds",
	"route_latency_p99":     "P99 request duration per route {method, route}, seconds",
	"route_requests":        "requests per route {method, route} in the window",
	"route_rate":            "requests per second per route {method, route}",
	"route_error_ratio":     "share of 5xx responses per route {method, route}",
	"cache_hit_ratio":       "share of cache lookups served from any tier (fresh or stale) per route {route}",
	"cache_tier_hit_ratio":  "share of the lookups reaching a tier that it served, per route and tier {route, tier}",
	"cache_lookups":         "cache lookups (requests not bypassed) per route {route} in the window",
	"pool_utilisation":      "database connections in use over the maximum, now",
	"pool_health":           "database pool health score 0-100, now",
	"redis_up":              "1 while the Redis tier is usable, 0 while its breaker is open",
	"policy_fallback_ratio": "share of decisions not answered by the policy, per kind {kind}",
	"policy_decisions":      "policy decisions per kind {kind} in the window",
	"policy_latency_p99":    "P99 decision duration per kind {kind}, seconds",
	"ai_cost_saving_ratio":  "1 - model cost / baseline cost of the messages answered, over all tiers",
	"llm_turns":             "messages answered by a model in the window",
}

// Query evaluates a signal now. Unknown signals and windows past five
// minutes are errors.
func (m *Metrics) Query(q Query) ([]Sample, error) {
	if _, ok := Signals[q.Signal]; !ok {
		return nil, fmt.Errorf("observe: unknown signal %q", q.Signal)
	}
	w := q.Window
	if w == 0 {
		w = time.Minute
	}
	if w < time.Second || w > maxWindow {
		return nil, fmt.Errorf("observe: window %s of %s out of range [1s, %s]", w, q.Signal, maxWindow)
	}
	now := m.now()
	var out []Sample
	switch q.Signal {
	case "route_latency_p50", "route_latency_p95", "route_latency_p99", "route_requests", "route_rate", "route_error_ratio":
		m.routeWins.each(func(k routeKey, rw *routeWindow) {
			st := rw.lat.Stats(now, w)
			if st.Count == 0 && q.Signal != "route_requests" && q.Signal != "route_rate" {
				return
			}
			var v float64
			switch q.Signal {
			case "route_latency_p50":
				v = st.P50
			case "route_latency_p95":
				v = st.P95
			case "route_latency_p99":
				v = st.P99
			case "route_requests":
				v = float64(st.Count)
			case "route_rate":
				v = st.Rate
			case "route_error_ratio":
				v = float64(st.Errors) / float64(st.Count)
			}
			out = append(out, Sample{Labels: map[string]string{"method": k.method, "route": k.route}, Value: v})
		})
	case "cache_hit_ratio", "cache_tier_hit_ratio", "cache_lookups":
		redis := m.Redis().Configured
		m.cacheSeries.each(func(route string, c *cacheSeries) {
			r := cacheRoute(route, c.win.Sums(now, w), redis)
			switch q.Signal {
			case "cache_lookups":
				out = append(out, Sample{Labels: map[string]string{"route": route}, Value: float64(r.Lookups)})
			case "cache_hit_ratio":
				if r.Lookups > 0 {
					out = append(out, Sample{Labels: map[string]string{"route": route}, Value: r.HitRatio})
				}
			default:
				for _, t := range r.Tiers {
					if t.Lookups > 0 {
						out = append(out, Sample{Labels: map[string]string{"route": route, "tier": t.Tier}, Value: t.HitRatio})
					}
				}
			}
		})
	case "pool_utilisation", "pool_health":
		if st, ok := m.Pool(); ok {
			v := st.Utilisation
			if q.Signal == "pool_health" {
				v = float64(st.Health)
			}
			out = append(out, Sample{Labels: map[string]string{}, Value: v})
		}
	case "redis_up":
		if st := m.Redis(); st.Configured {
			v := 0.0
			if st.Up {
				v = 1
			}
			out = append(out, Sample{Labels: map[string]string{}, Value: v})
		}
	case "policy_fallback_ratio", "policy_decisions", "policy_latency_p99":
		m.policyKinds.each(func(kind string, k *policyKind) {
			st := k.lat.Stats(now, w)
			if st.Count == 0 && q.Signal != "policy_decisions" {
				return
			}
			var v float64
			switch q.Signal {
			case "policy_fallback_ratio":
				v = float64(st.Errors) / float64(st.Count)
			case "policy_decisions":
				v = float64(st.Count)
			case "policy_latency_p99":
				v = st.P99
			}
			out = append(out, Sample{Labels: map[string]string{"kind": kind}, Value: v})
		})
	case "ai_cost_saving_ratio", "llm_turns":
		tot := make([]uint64, lFields)
		any := false
		m.llmTiers.each(func(_ string, t *llmTier) {
			any = true
			for i, x := range t.win.Sums(now, w) {
				tot[i] += x
			}
		})
		if !any {
			break
		}
		f := aiFigures("", tot)
		if q.Signal == "llm_turns" {
			out = append(out, Sample{Labels: map[string]string{}, Value: float64(f.Turns)})
		} else if f.BaselineUSD > 0 {
			out = append(out, Sample{Labels: map[string]string{}, Value: f.SavingRatio})
		}
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Labels) < fmt.Sprint(out[j].Labels) })
	return out, nil
}
