package loadgen

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Targets are the pass/fail thresholds of a run, read from a JSON file:
//
//	{
//	  "p95_ms": {"*": 1000},
//	  "p99_ms": {"challenges": 50, "challenge": 50, "reputation": 50, "matches": 50, "location_get": 50},
//	  "min_cache_hit_ratio": 0.85,
//	  "max_error_ratio": 0.001,
//	  "max_5xx": 0,
//	  "min_chat_cost_saved_pct": 40,
//	  "min_chat_context_saved_pct": 70
//	}
//
// In p95_ms and p99_ms, "*" applies to every endpoint that has requests
// and no entry of its own; an endpoint named explicitly must have had
// successful requests. Absent fields are not checked.
type Targets struct {
	P95MS                  map[string]float64 `json:"p95_ms,omitempty"`
	P99MS                  map[string]float64 `json:"p99_ms,omitempty"`
	MinCacheHitRatio       *float64           `json:"min_cache_hit_ratio,omitempty"`
	MaxErrorRatio          *float64           `json:"max_error_ratio,omitempty"`
	Max5xx                 *int64             `json:"max_5xx,omitempty"`
	MaxDropped             *int64             `json:"max_dropped,omitempty"`
	MinRPS                 *float64           `json:"min_rps,omitempty"`
	MinChatCostSavedPct    *float64           `json:"min_chat_cost_saved_pct,omitempty"`
	MinChatContextSavedPct *float64           `json:"min_chat_context_saved_pct,omitempty"`
	// Gauges bounds sampled server metrics: every sample at least min
	// and at most max (either may be absent). A gauge with no samples
	// fails.
	Gauges map[string]GaugeTarget `json:"gauges,omitempty"`
}

// GaugeTarget bounds the samples of one server metric: Min and Max every
// sample, MeanMin and MeanMax their mean (a momentary spike of pool
// utilisation is normal; a high average is not).
type GaugeTarget struct {
	Min     *float64 `json:"min,omitempty"`
	Max     *float64 `json:"max,omitempty"`
	MeanMin *float64 `json:"mean_min,omitempty"`
	MeanMax *float64 `json:"mean_max,omitempty"`
}

// GaugeNames returns the metrics the targets bound, to sample them.
func (t Targets) GaugeNames() []string {
	names := make([]string, 0, len(t.Gauges))
	for n := range t.Gauges {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DefaultTargetsJSON are the project's targets (issue 9): P95 under 1 s
// everywhere, cached reads under 50 ms at P99, hit ratio over 85%, no
// 5xx, chat cost 40% and context 70% under the baseline, the database
// pool healthy (health 80 or more on average, at most 80% of its
// connections busy on average).
// `wingate load --targets default` uses them.
//
//go:embed targets.json
var DefaultTargetsJSON []byte

// LoadTargets reads a targets file, or DefaultTargetsJSON for the path
// "default"; unknown fields and endpoint names are errors.
func LoadTargets(path string) (Targets, error) {
	var t Targets
	data := DefaultTargetsJSON
	if path != "default" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return t, fmt.Errorf("loadgen: targets: %w", err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("loadgen: targets %s: %w", path, err)
	}
	for field, m := range map[string]map[string]float64{"p95_ms": t.P95MS, "p99_ms": t.P99MS} {
		for name := range m {
			if name != "*" && !validEndpoint(name) {
				return t, fmt.Errorf("loadgen: targets %s: %s: unknown endpoint %q", path, field, name)
			}
		}
	}
	return t, nil
}

// Check is one comparison of a figure with its target.
type Check struct {
	Name   string  `json:"name"`
	Got    float64 `json:"got"`
	Target string  `json:"target"`
	Pass   bool    `json:"pass"`
}

// Evaluate compares the report with t, fills in Checks and Pass, and
// reports whether every target was met.
func (r *Report) Evaluate(t Targets) bool {
	var checks []Check
	atMost := func(name string, got, max float64) {
		checks = append(checks, Check{Name: name, Got: got, Target: fmt.Sprintf("<= %s", fmtNum(max)), Pass: got <= max})
	}
	atLeast := func(name string, got, min float64) {
		checks = append(checks, Check{Name: name, Got: got, Target: fmt.Sprintf(">= %s", fmtNum(min)), Pass: got >= min})
	}
	percentile := func(label string, limits map[string]float64, get func(EndpointReport) float64) {
		names := make([]string, 0, len(r.Endpoints)+len(limits))
		seen := map[string]bool{}
		for n := range r.Endpoints {
			names, seen[n] = append(names, n), true
		}
		for n := range limits {
			if n != "*" && !seen[n] {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			limit, own := limits[n]
			if !own {
				var ok bool
				if limit, ok = limits["*"]; !ok {
					continue
				}
			}
			e, ran := r.Endpoints[n]
			name := fmt.Sprintf("%s %s ms", n, label)
			if !ran || e.OK == 0 {
				if own || (ran && e.Requests > 0) {
					checks = append(checks, Check{Name: name + " (no successful requests)", Target: fmt.Sprintf("<= %s", fmtNum(limit))})
				}
				continue
			}
			atMost(name, get(e), limit)
		}
	}
	percentile("p95", t.P95MS, func(e EndpointReport) float64 { return e.P95MS })
	percentile("p99", t.P99MS, func(e EndpointReport) float64 { return e.P99MS })
	if t.MinCacheHitRatio != nil {
		atLeast("cache hit ratio", r.HitRatio, *t.MinCacheHitRatio)
	}
	failed := r.Requests - r.Overall.OK
	if t.MaxErrorRatio != nil {
		ratio := 1.0 // nothing answered is a failed run
		if r.Requests > 0 {
			ratio = float64(failed) / float64(r.Requests)
		}
		atMost("error ratio", ratio, *t.MaxErrorRatio)
	}
	if t.Max5xx != nil {
		var n int64
		for k, v := range r.Errors {
			if strings.HasPrefix(k, "5") && len(k) == 3 {
				n += v
			}
		}
		atMost("5xx responses", float64(n), float64(*t.Max5xx))
	}
	if t.MaxDropped != nil {
		atMost("dropped requests", float64(r.Dropped), float64(*t.MaxDropped))
	}
	if t.MinRPS != nil {
		atLeast("requests per second", r.RPS, *t.MinRPS)
	}
	if t.MinChatCostSavedPct != nil {
		atLeast("chat cost saved %", r.Chat.CostSavedPct, *t.MinChatCostSavedPct)
	}
	if t.MinChatContextSavedPct != nil {
		atLeast("chat context tokens saved %", r.Chat.ContextSavedPct, *t.MinChatContextSavedPct)
	}
	for _, name := range t.GaugeNames() {
		gt := t.Gauges[name]
		g, ok := r.Gauges[name]
		if !ok || g.Samples == 0 {
			checks = append(checks, Check{Name: name + " (not sampled)", Target: "samples from /metrics"})
			continue
		}
		if gt.Min != nil {
			atLeast(name+" min", g.Min, *gt.Min)
		}
		if gt.Max != nil {
			atMost(name+" max", g.Max, *gt.Max)
		}
		if gt.MeanMin != nil {
			atLeast(name+" mean", g.Mean, *gt.MeanMin)
		}
		if gt.MeanMax != nil {
			atMost(name+" mean", g.Mean, *gt.MeanMax)
		}
	}
	pass := true
	for _, c := range checks {
		pass = pass && c.Pass
	}
	r.Checks, r.Pass = checks, &pass
	return pass
}
