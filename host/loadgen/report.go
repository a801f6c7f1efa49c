package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stats are one worker's counters; workers never share them.
type stats struct {
	endpoints map[string]*endpointStats
	chat      chatStats
	dropped   int64
	// live, when not nil, also receives every request (progress.go).
	live *liveStats
}

func newStats() *stats { return &stats{endpoints: map[string]*endpointStats{}} }

func (s *stats) endpoint(name string) *endpointStats {
	e := s.endpoints[name]
	if e == nil {
		e = &endpointStats{errors: map[string]int64{}, cache: map[string]int64{}, live: s.live}
		s.endpoints[name] = e
	}
	return e
}

func (s *stats) merge(o *stats) {
	for name, e := range o.endpoints {
		s.endpoint(name).merge(e)
	}
	s.chat.merge(&o.chat)
	s.dropped += o.dropped
}

type endpointStats struct {
	hist     histogram // successful requests' latency
	all      histogram // every answered request's latency
	requests int64
	ok       int64
	errors   map[string]int64 // status code or failure kind
	cache    map[string]int64 // X-Cache value
	live     *liveStats       // the worker's live reading, or nil
}

func (e *endpointStats) fail(kind string) {
	e.requests++
	e.errors[kind]++
	e.live.add(0, false)
}

func (e *endpointStats) done(d time.Duration, status int, ok bool, xcache string) {
	e.requests++
	e.all.record(d)
	e.live.add(d, ok)
	if ok {
		e.ok++
		e.hist.record(d)
	} else {
		e.errors[strconv.Itoa(status)]++
	}
	if xcache != "" {
		e.cache[strings.ToUpper(xcache)]++
	}
}

func (e *endpointStats) merge(o *endpointStats) {
	e.hist.merge(&o.hist)
	e.all.merge(&o.all)
	e.requests += o.requests
	e.ok += o.ok
	for k, v := range o.errors {
		e.errors[k] += v
	}
	for k, v := range o.cache {
		e.cache[k] += v
	}
}

// chatStats sums what the chat answers report about cost and context.
type chatStats struct {
	messages              int64
	costUSD               float64
	baselineCostUSD       float64
	contextTokens         int64
	baselineContextTokens int64
	inputTokens           int64
	outputTokens          int64
	tiers                 map[string]int64
}

// add reads one chat answer: the assistant message ("reply") carries the
// cost and context accounting of the turn.
func (c *chatStats) add(body []byte) {
	var r struct {
		Reply struct {
			Tier                  string  `json:"tier"`
			InputTokens           int64   `json:"input_tokens"`
			OutputTokens          int64   `json:"output_tokens"`
			CostUSD               float64 `json:"cost_usd"`
			BaselineCostUSD       float64 `json:"baseline_cost_usd"`
			ContextTokens         int64   `json:"context_tokens"`
			BaselineContextTokens int64   `json:"baseline_context_tokens"`
		} `json:"reply"`
	}
	if json.Unmarshal(body, &r) != nil {
		return
	}
	c.messages++
	c.costUSD += r.Reply.CostUSD
	c.baselineCostUSD += r.Reply.BaselineCostUSD
	c.contextTokens += r.Reply.ContextTokens
	c.baselineContextTokens += r.Reply.BaselineContextTokens
	c.inputTokens += r.Reply.InputTokens
	c.outputTokens += r.Reply.OutputTokens
	if r.Reply.Tier != "" {
		if c.tiers == nil {
			c.tiers = map[string]int64{}
		}
		c.tiers[r.Reply.Tier]++
	}
}

func (c *chatStats) merge(o *chatStats) {
	c.messages += o.messages
	c.costUSD += o.costUSD
	c.baselineCostUSD += o.baselineCostUSD
	c.contextTokens += o.contextTokens
	c.baselineContextTokens += o.baselineContextTokens
	c.inputTokens += o.inputTokens
	c.outputTokens += o.outputTokens
	for k, v := range o.tiers {
		if c.tiers == nil {
			c.tiers = map[string]int64{}
		}
		c.tiers[k] += v
	}
}

// Report is the result of a run, as written by `wingate load --json`.
// Latencies are in milliseconds.
type Report struct {
	Target      string `json:"target"`
	Mode        Mode   `json:"mode"`
	Connections int    `json:"connections"`
	// ConnectionsOpened counts TCP connections dialled, warm-up included:
	// about Connections when keep-alive works.
	ConnectionsOpened int64   `json:"connections_opened"`
	Rate              float64 `json:"rate,omitempty"`
	Users             int     `json:"users"`
	Seconds           float64 `json:"seconds"`
	Requests          int64   `json:"requests"`
	RPS               float64 `json:"rps"`
	// Dropped counts scheduled requests never sent before the hard stop
	// (constant-rate mode: the server could not keep up).
	Dropped   int64                     `json:"dropped"`
	Overall   EndpointReport            `json:"overall"`
	Endpoints map[string]EndpointReport `json:"endpoints"`
	// Errors counts failed requests by HTTP status or failure kind
	// ("transport", "timeout", "token", "setup").
	Errors map[string]int64 `json:"errors"`
	// Cache counts X-Cache values over every endpoint; HitRatio is
	// (HIT + STALE) / (HIT + STALE + MISS): BYPASS is not a lookup.
	Cache    map[string]int64 `json:"cache"`
	HitRatio float64          `json:"cache_hit_ratio"`
	Chat     ChatReport       `json:"chat"`
	// Gauges summarises the server metrics sampled during the run
	// (Config.Gauges).
	Gauges map[string]GaugeReport `json:"gauges,omitempty"`
	// Checks holds the comparison with a targets file, when given.
	Checks []Check `json:"checks,omitempty"`
	Pass   *bool   `json:"pass,omitempty"`
}

// EndpointReport is one endpoint's figures. Percentiles are over
// successful requests; MaxMS over every answered request.
type EndpointReport struct {
	Requests int64            `json:"requests"`
	OK       int64            `json:"ok"`
	RPS      float64          `json:"rps"`
	P50MS    float64          `json:"p50_ms"`
	P95MS    float64          `json:"p95_ms"`
	P99MS    float64          `json:"p99_ms"`
	MaxMS    float64          `json:"max_ms"`
	MeanMS   float64          `json:"mean_ms"`
	Errors   map[string]int64 `json:"errors,omitempty"`
	Cache    map[string]int64 `json:"cache,omitempty"`
	HitRatio *float64         `json:"cache_hit_ratio,omitempty"`
}

// ChatReport sums the chat answers: what the turns cost against the
// baseline (every turn on the premium tier with the full history).
type ChatReport struct {
	Messages              int64            `json:"messages"`
	CostUSD               float64          `json:"cost_usd"`
	BaselineCostUSD       float64          `json:"baseline_cost_usd"`
	CostSavedPct          float64          `json:"cost_saved_pct"`
	ContextTokens         int64            `json:"context_tokens"`
	BaselineContextTokens int64            `json:"baseline_context_tokens"`
	ContextSavedPct       float64          `json:"context_saved_pct"`
	InputTokens           int64            `json:"input_tokens"`
	OutputTokens          int64            `json:"output_tokens"`
	Tiers                 map[string]int64 `json:"tiers,omitempty"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func hitRatio(cache map[string]int64) (float64, bool) {
	hits := cache["HIT"] + cache["STALE"]
	lookups := hits + cache["MISS"]
	if lookups == 0 {
		return 0, false
	}
	return float64(hits) / float64(lookups), true
}

func endpointReport(e *endpointStats, secs float64) EndpointReport {
	r := EndpointReport{
		Requests: e.requests, OK: e.ok,
		P50MS: ms(e.hist.quantile(0.50)), P95MS: ms(e.hist.quantile(0.95)), P99MS: ms(e.hist.quantile(0.99)),
		MaxMS: ms(time.Duration(e.all.max)),
	}
	if secs > 0 {
		r.RPS = math.Round(float64(e.requests)/secs*10) / 10
	}
	if e.hist.n > 0 {
		r.MeanMS = ms(time.Duration(e.hist.sum / e.hist.n))
	}
	if len(e.errors) > 0 {
		r.Errors = e.errors
	}
	if len(e.cache) > 0 {
		r.Cache = e.cache
		if h, ok := hitRatio(e.cache); ok {
			r.HitRatio = &h
		}
	}
	return r
}

func pct(saved, base float64) float64 {
	if base <= 0 {
		return 0
	}
	return math.Round(1000*saved/base) / 10
}

func buildReport(cfg Config, s *stats, elapsed time.Duration) *Report {
	secs := elapsed.Seconds()
	rep := &Report{
		Target: cfg.Target, Mode: cfg.Mode, Connections: cfg.Connections, Users: cfg.Users,
		Seconds: math.Round(secs*100) / 100, Dropped: s.dropped,
		Endpoints: map[string]EndpointReport{}, Errors: map[string]int64{}, Cache: map[string]int64{},
	}
	if cfg.Mode == ModeRate {
		rep.Rate = cfg.Rate
	}
	overall := &endpointStats{errors: map[string]int64{}, cache: map[string]int64{}}
	for name, e := range s.endpoints {
		rep.Endpoints[name] = endpointReport(e, secs)
		overall.merge(e)
	}
	rep.Overall = endpointReport(overall, secs)
	rep.Requests = overall.requests
	rep.RPS = rep.Overall.RPS
	rep.Errors = overall.errors
	rep.Cache = overall.cache
	rep.HitRatio, _ = hitRatio(overall.cache)
	c := s.chat
	rep.Chat = ChatReport{
		Messages: c.messages, CostUSD: c.costUSD, BaselineCostUSD: c.baselineCostUSD,
		CostSavedPct:  pct(c.baselineCostUSD-c.costUSD, c.baselineCostUSD),
		ContextTokens: c.contextTokens, BaselineContextTokens: c.baselineContextTokens,
		ContextSavedPct: pct(float64(c.baselineContextTokens-c.contextTokens), float64(c.baselineContextTokens)),
		InputTokens:     c.inputTokens, OutputTokens: c.outputTokens, Tiers: c.tiers,
	}
	return rep
}

// WriteText writes a human-readable summary of the report.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "target %s, %s mode, %d connections", r.Target, r.Mode, r.Connections)
	if r.Mode == ModeRate {
		fmt.Fprintf(&b, ", %.0f req/s scheduled", r.Rate)
	}
	fmt.Fprintf(&b, ", %d users, %d connections opened\n", r.Users, r.ConnectionsOpened)
	fmt.Fprintf(&b, "%d requests in %.1fs: %.0f req/s", r.Requests, r.Seconds, r.RPS)
	if r.Dropped > 0 {
		fmt.Fprintf(&b, ", %d scheduled but not sent", r.Dropped)
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "%-14s %9s %9s %9s %9s %9s %9s %7s  %s\n", "endpoint", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "hit", "errors")
	names := make([]string, 0, len(r.Endpoints))
	for n := range r.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	row := func(name string, e EndpointReport) {
		hit := "-"
		if e.HitRatio != nil {
			hit = fmt.Sprintf("%.1f%%", 100**e.HitRatio)
		}
		fmt.Fprintf(&b, "%-14s %9d %9.1f %9.2f %9.2f %9.2f %9.2f %7s  %s\n", name, e.Requests, e.RPS, e.P50MS, e.P95MS, e.P99MS, e.MaxMS, hit, countList(e.Errors))
	}
	for _, n := range names {
		row(n, r.Endpoints[n])
	}
	row("all", r.Overall)
	fmt.Fprintf(&b, "\ncache hit ratio %.1f%% (%s)\n", 100*r.HitRatio, countList(r.Cache))
	if r.Chat.Messages > 0 {
		c := r.Chat
		fmt.Fprintf(&b, "chat: %d replies, cost $%.4f vs baseline $%.4f (%.1f%% saved), context %d vs %d tokens (%.1f%% fewer), tiers %s\n",
			c.Messages, c.CostUSD, c.BaselineCostUSD, c.CostSavedPct, c.ContextTokens, c.BaselineContextTokens, c.ContextSavedPct, countList(c.Tiers))
	}
	if len(r.Gauges) > 0 {
		names := make([]string, 0, len(r.Gauges))
		for n := range r.Gauges {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			g := r.Gauges[n]
			fmt.Fprintf(&b, "%s: min %s, mean %s, max %s (%d samples)\n", n, fmtNum(g.Min), fmtNum(g.Mean), fmtNum(g.Max), g.Samples)
		}
	}
	if len(r.Checks) > 0 {
		b.WriteString("\n")
		for _, c := range r.Checks {
			mark := "PASS"
			if !c.Pass {
				mark = "FAIL"
			}
			fmt.Fprintf(&b, "%s %-40s got %-12s target %s\n", mark, c.Name, fmtNum(c.Got), c.Target)
		}
		if r.Pass != nil && *r.Pass {
			b.WriteString("all targets met\n")
		} else {
			b.WriteString("targets missed\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func countList(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }
