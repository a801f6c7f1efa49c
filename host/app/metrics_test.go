package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/dashboard"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/loadgen"
	"github.com/wingman-app/wingate/host/observe"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// p99Duration is how long TestCachedP99MatchesDashboard loads the server:
// a short run in the normal suite; `task p99-check` runs it for longer.
var p99Duration = flag.Duration("p99-duration", 2*time.Second, "load duration of TestCachedP99MatchesDashboard")

// promtool returns the path of Prometheus' promtool. Under CI=true a
// missing promtool fails the test (.ci/run installs Debian's prometheus
// package); elsewhere the test is skipped with a message.
func promtool(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("promtool not found (Debian's prometheus package): %v", err)
	}
	tb.Skip("promtool not found: install Debian's prometheus package to run this check")
	return ""
}

// runPromtool runs promtool with args and stdin in the repository's root
// and fails the test unless it exits 0 with nothing on stderr.
func runPromtool(tb testing.TB, stdin []byte, args ...string) string {
	tb.Helper()
	cmd := exec.Command(promtool(tb), args...)
	cmd.Dir = testkit.RepoRoot(tb)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		tb.Fatalf("promtool %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// liveServer is a served assembly on a loopback port.
type liveServer struct {
	app  *App
	base string // the public listener
	ops  string // the operators' listener: /metrics, /dashboard
}

// startLive builds and starts the server as `wingate serve` does, with
// the repository's policies: with stores, on a fresh PostgreSQL database
// (migrated and seeded with users) and a private Redis; without, on the
// in-memory defaults.
func startLive(tb testing.TB, stores bool) *liveServer {
	tb.Helper()
	cfg := Defaults()
	cfg.PolicyDir, cfg.JWTSecret = policyDir(tb), testSecret
	if stores {
		ctx := context.Background()
		dbURL, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_app_metrics")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = drop() })
		st, err := pgstore.Open(ctx, pgstore.Config{URL: dbURL})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := st.Migrate(ctx); err != nil {
			tb.Fatal(err)
		}
		if _, err := st.Seed(ctx, pgstore.SeedOptions{Users: 50}); err != nil {
			tb.Fatal(err)
		}
		st.Close()
		cfg.DatabaseURL, cfg.RedisURL = dbURL, testkit.StartRedis(tb).URL()
	}
	a := buildReady(tb, cfg, true)
	return &liveServer{app: a, base: "http://" + a.Addr(), ops: "http://" + a.OpsAddr()}
}

// load runs the load generator against the server with mix (nil: the
// default mix of every endpoint, chats included) for d.
func (s *liveServer) load(tb testing.TB, mix loadgen.Mix, d time.Duration) *loadgen.Report {
	tb.Helper()
	return s.loadWarm(tb, mix, 0, d)
}

// loadWarm is load after an unmeasured warm-up of the same load.
func (s *liveServer) loadWarm(tb testing.TB, mix loadgen.Mix, warmup, d time.Duration) *loadgen.Report {
	tb.Helper()
	a, err := auth.New([]byte(testSecret))
	if err != nil {
		tb.Fatal(err)
	}
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		Target: s.base, Connections: 8, Duration: d, Warmup: warmup, Users: 50, Mix: mix, Timeout: 10 * time.Second,
		Tokens: func(u int64) (string, error) { return a.Issue(u, time.Hour) },
	})
	if err != nil {
		tb.Fatal(err)
	}
	if rep.Requests == 0 {
		tb.Fatalf("the load sent no request: %+v", rep)
	}
	return rep
}

// scrape GETs /metrics with accept (empty: none) and returns the body and
// its Content-Type.
func (s *liveServer) scrape(tb testing.TB, accept string) ([]byte, string) {
	tb.Helper()
	req, err := http.NewRequest("GET", s.ops+"/metrics", nil)
	if err != nil {
		tb.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		tb.Fatalf("/metrics: %d %v", res.StatusCode, err)
	}
	return b, res.Header.Get("Content-Type")
}

// families parses a text-format scrape.
func families(tb testing.TB, text []byte) map[string]*dto.MetricFamily {
	tb.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		tb.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// sampleNames returns the names of the samples of a text-format scrape
// (histograms as their _bucket, _sum and _count series).
func sampleNames(text []byte) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	return names
}

// loadScrape is a scrape of a server after a load of every endpoint, in
// the text format and in OpenMetrics.
type loadScrape struct {
	text, om     []byte
	textCT, omCT string
}

// openMetricsAccept is what Prometheus sends by default.
const openMetricsAccept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

var (
	scrapesMu sync.Mutex
	scrapes   = map[bool]*loadScrape{}
)

// scrapeAfterLoad starts a server (with stores or not), loads it with
// every endpoint for 1.5 s, scrapes it and stops it; the tests of the
// package share one such scrape per set-up.
func scrapeAfterLoad(tb testing.TB, stores bool) *loadScrape {
	tb.Helper()
	scrapesMu.Lock()
	defer scrapesMu.Unlock()
	if sc := scrapes[stores]; sc != nil {
		return sc
	}
	s := startLive(tb, stores)
	s.load(tb, nil, 1500*time.Millisecond)
	sc := &loadScrape{}
	sc.text, sc.textCT = s.scrape(tb, "")
	sc.om, sc.omCT = s.scrape(tb, openMetricsAccept)
	scrapes[stores] = sc
	return sc
}

var scrapeModes = []struct {
	name   string
	stores bool
}{{"memory", false}, {"postgres+redis", true}}

// TestMetricsPassPromtool is `promtool check metrics` on a scrape of the
// served assembly after a load of every endpoint, in the default
// in-memory set-up and with PostgreSQL and Redis (whose pool and breaker
// metrics appear only then), in the Prometheus text format and in
// OpenMetrics, which the server answers when the scraper asks for it.
func TestMetricsPassPromtool(t *testing.T) {
	promtool(t)
	for _, mode := range scrapeModes {
		t.Run(mode.name, func(t *testing.T) {
			sc := scrapeAfterLoad(t, mode.stores)
			text, ct := sc.text, sc.textCT
			if !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type without Accept = %q, want the text format", ct)
			}
			runPromtool(t, text, "check", "metrics")
			names := sampleNames(text)
			want := []string{"http_server_request_duration_seconds_bucket", "wingate_policy_decision_duration_seconds_bucket",
				"wingate_llm_call_duration_seconds_bucket", "wingate_llm_cost_usd_total",
				"gen_ai_client_operation_duration_seconds_bucket", "gen_ai_client_token_usage_bucket"}
			if mode.stores {
				want = append(want, "db_client_connections_usage", "wingate_db_pool_utilization_ratio",
					"db_client_operation_duration_seconds_bucket", "wingate_cache_redis_up")
			}
			for _, n := range want {
				if !names[n] {
					t.Errorf("%s missing from the scrape", n)
				}
			}
			for n := range names {
				if strings.Contains(n, "utilisation") {
					t.Errorf("%s: spelt utilisation", n)
				}
			}

			om, ct := sc.om, sc.omCT
			if !strings.HasPrefix(ct, "application/openmetrics-text") {
				t.Fatalf("Content-Type when OpenMetrics is asked for = %q", ct)
			}
			if !bytes.HasSuffix(om, []byte("# EOF\n")) {
				t.Errorf("the OpenMetrics exposition does not end in # EOF: %q", om[max(0, len(om)-80):])
			}
			checkOpenMetrics(t, om)
		})
	}
}

// checkOpenMetrics checks what promtool (which reads only the text
// format) cannot: the exposition ends in one # EOF, every family is
// described once (a counter family is named without its _total, so a
// gauge of the same name would collide) and a counter's samples end in
// _total.
func checkOpenMetrics(tb testing.TB, om []byte) {
	tb.Helper()
	lines := strings.Split(strings.TrimSuffix(string(om), "\n"), "\n")
	if lines[len(lines)-1] != "# EOF" || slices.Index(lines, "# EOF") != len(lines)-1 {
		tb.Errorf("the OpenMetrics exposition does not end in one # EOF")
	}
	types := map[string]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			if prev, ok := types[f[2]]; ok {
				tb.Errorf("OpenMetrics family %s described twice (%s, then %s)", f[2], prev, f[3])
			}
			types[f[2]] = f[3]
		}
	}
	if len(types) < 10 {
		tb.Fatalf("%d OpenMetrics families", len(types))
	}
	for _, l := range lines {
		if l == "" || l[0] == '#' {
			continue
		}
		name := l[:strings.IndexAny(l, "{ ")]
		if fam := strings.TrimSuffix(name, "_total"); types[fam] == "counter" && name == fam {
			tb.Errorf("counter sample %s does not end in _total", name)
		}
	}
}

// histBounds returns the upper bounds (without +Inf) of family's first
// series.
func histBounds(tb testing.TB, fams map[string]*dto.MetricFamily, family string) []float64 {
	tb.Helper()
	f := fams[family]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) == 0 {
		tb.Fatalf("no histogram %s in the scrape", family)
	}
	var out []float64
	for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) {
			out = append(out, b.GetUpperBound())
		}
	}
	// Every series of the family has the same bounds.
	for _, mt := range f.GetMetric()[1:] {
		if n := len(mt.GetHistogram().GetBucket()); n != len(out)+1 {
			tb.Errorf("%s: a series has %d buckets, another %d", family, n, len(out)+1)
		}
	}
	return out
}

// TestLatencyHistogramBuckets reads the bucket bounds of the latency
// histograms off a scrape after load (requests, policy decisions and
// calls, database operations, model provider calls) and checks that they
// resolve what the server does: from 10 µs (1 µs for policies) or below
// to 30 s or above, adjacent bounds at most 1.25 times apart below 10 ms.
func TestLatencyHistogramBuckets(t *testing.T) {
	text := scrapeAfterLoad(t, true).text
	fams := families(t, text)
	for _, tc := range []struct {
		family string
		lowest float64
		want   []float64
	}{
		{"http_server_request_duration_seconds", 10e-6, observe.HTTPDurationBuckets},
		{"wingate_policy_decision_duration_seconds", 1e-6, observe.DecisionDurationBuckets},
		{"wingate_policy_call_duration_seconds", 1e-6, observe.DecisionDurationBuckets},
		{"db_client_operation_duration_seconds", 10e-6, observe.QueryDurationBuckets},
		{"wingate_llm_call_duration_seconds", 10e-6, observe.ProviderDurationBuckets},
	} {
		t.Run(tc.family, func(t *testing.T) {
			b := histBounds(t, fams, tc.family)
			if !slices.Equal(b, tc.want) {
				t.Errorf("bounds on the scrape %v, want %v", b, tc.want)
			}
			if len(b) == 0 || b[0] > tc.lowest*(1+1e-9) {
				t.Fatalf("lowest bound %v, want at most %v", b, tc.lowest)
			}
			if last := b[len(b)-1]; last < 30 {
				t.Errorf("highest bound %v s, want at least 30 s", last)
			}
			for i := 1; i < len(b); i++ {
				if b[i] <= b[i-1] {
					t.Fatalf("bounds not increasing at %v, %v", b[i-1], b[i])
				}
				if b[i-1] < 10e-3 && b[i]/b[i-1] > 1.25+1e-9 {
					t.Errorf("bounds %v and %v are %.3f times apart, over 1.25 below 10 ms", b[i-1], b[i], b[i]/b[i-1])
				}
			}
		})
	}
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// histogramQuantile is Prometheus' histogram_quantile: find the bucket
// holding rank q·count and interpolate linearly inside it, from the
// bucket below's upper bound (0 for the first); a rank in the +Inf bucket
// answers the highest finite bound.
func histogramQuantile(q float64, bs []bucket) float64 {
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].le, 1) {
		return math.NaN()
	}
	total := bs[len(bs)-1].count
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	b := sort.Search(len(bs)-1, func(i int) bool { return bs[i].count >= rank })
	if b == len(bs)-1 {
		return bs[len(bs)-2].le
	}
	if b == 0 && bs[0].le <= 0 {
		return bs[0].le
	}
	start, end, count := 0.0, bs[b].le, bs[b].count
	if b > 0 {
		start = bs[b-1].le
		count -= bs[b-1].count
		rank -= bs[b-1].count
	}
	return start + (end-start)*(rank/count)
}

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		q    float64
		bs   []bucket
		want float64
	}{
		{0.5, []bucket{{1, 0}, {2, 10}, {inf, 10}}, 1.5},
		{0.99, []bucket{{1, 50}, {2, 100}, {inf, 100}}, 1.98},
		{0.5, []bucket{{1, 10}, {inf, 10}}, 0.5},               // first bucket: from 0
		{0.99, []bucket{{1, 10}, {2, 10}, {inf, 100}}, 2},      // rank in +Inf: highest bound
		{0.5, []bucket{{inf, 10}, {2, 10}, {1, 4}}, 1 + 1.0/6}, // unsorted input
		{0.5, []bucket{{1, 0}, {inf, 0}}, math.NaN()},          // no observation
	} {
		got := histogramQuantile(tc.q, slices.Clone(tc.bs))
		if !(math.Abs(got-tc.want) < 1e-9 || math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("histogramQuantile(%v, %v) = %v, want %v", tc.q, tc.bs, got, tc.want)
		}
	}
}

// routeBuckets sums family's buckets over the series of route (every
// method and status), as `sum by (le)` does.
func routeBuckets(fams map[string]*dto.MetricFamily, family, route string) []bucket {
	byLE := map[float64]float64{}
	for _, mt := range fams[family].GetMetric() {
		ok := false
		for _, l := range mt.GetLabel() {
			ok = ok || l.GetName() == "http_route" && l.GetValue() == route
		}
		if !ok {
			continue
		}
		for _, b := range mt.GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				byLE[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		byLE[math.Inf(1)] += float64(mt.GetHistogram().GetSampleCount())
	}
	var out []bucket
	for le, c := range byLE {
		out = append(out, bucket{le, c})
	}
	return out
}

// TestCachedP99MatchesDashboard loads the served assembly with cached
// requests (the public catalogue, which the shipped cache policy caches)
// through the load generator, then computes the p99 of the catalogue
// route from the scrape's histogram as Prometheus' histogram_quantile
// would, and compares it with the p99 the dashboard's own window reports
// for the same requests (the last minute holds the whole run, the server
// being fresh): within 20%. `task p99-check` runs it for longer.
func TestCachedP99MatchesDashboard(t *testing.T) {
	s := startLive(t, false)
	if *p99Duration > 45*time.Second {
		t.Fatalf("-p99-duration %v: the dashboard's window is one minute", *p99Duration)
	}
	// The warm-up fills the cache; the server being fresh, the histogram
	// and the dashboard's minute both hold the warm-up and the run.
	rep := s.loadWarm(t, loadgen.Mix{loadgen.EpChallenges: 1}, time.Second, *p99Duration)
	text, _ := s.scrape(t, "")
	fams := families(t, text)
	const route = "/api/challenges"
	bs := routeBuckets(fams, "http_server_request_duration_seconds", route)
	fromHist := histogramQuantile(0.99, bs)

	res, err := http.Get(s.ops + "/dashboard/state")
	if err != nil {
		t.Fatal(err)
	}
	var st dashboard.State
	err = json.NewDecoder(res.Body).Decode(&st)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var dash *observe.LatencyStats
	for i, r := range st.Metrics.Requests.Routes {
		if r.Method == "GET" && r.Route == route {
			dash = &st.Metrics.Requests.Routes[i].M1
		}
	}
	if dash == nil {
		t.Fatalf("the dashboard has no window of GET %s: %+v", route, st.Metrics.Requests.Routes)
	}
	var count float64
	for _, b := range bs {
		if math.IsInf(b.le, 1) {
			count = b.count
		}
	}
	hits := rep.Cache["HIT"]
	t.Logf("%d requests in %.1f s (%d HIT, %d MISS): p99 from the histogram %.1f µs, dashboard's window %.1f µs (ratio %.3f); with the warm-up, %v in the histogram, %d in the window",
		rep.Requests, rep.Seconds, hits, rep.Cache["MISS"], fromHist*1e6, dash.P99*1e6, fromHist/dash.P99, count, dash.Count)
	if float64(dash.Count) != count || count < float64(rep.Requests) {
		t.Errorf("the dashboard's window holds %d requests, the histogram %v: not the same period", dash.Count, count)
	}
	if hits < rep.Requests*8/10 {
		t.Errorf("only %d of %d requests after the warm-up were cache hits", hits, rep.Requests)
	}
	if math.IsNaN(fromHist) || math.Abs(fromHist-dash.P99) > 0.2*dash.P99 {
		t.Errorf("p99 from the histogram %v s is not within 20%% of the dashboard's %v s", fromHist, dash.P99)
	}
}

// monitoringDir is the shipped monitoring files.
func monitoringDir(tb testing.TB) string {
	return filepath.Join(testkit.RepoRoot(tb), "deploy", "monitoring")
}

// TestShippedAlertRules: `promtool check rules` accepts the shipped
// Prometheus rules (the command of docs/metrics.md, as written), and each
// built-in alert rule (host/alert's default rules) has an alert of the
// same name there.
func TestShippedAlertRules(t *testing.T) {
	path := filepath.Join(monitoringDir(t), "alerts.yml")
	out := runPromtool(t, nil, "check", "rules", "deploy/monitoring/alerts.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules: %s", out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*-\s*alert:\s*(\S+)\s*$`).FindAllStringSubmatch(string(b), -1) {
		alerts[m[1]] = true
	}
	var builtin struct {
		Rules []struct{ Name string } `json:"rules"`
	}
	raw, err := os.ReadFile(filepath.Join(testkit.RepoRoot(t), "host", "alert", "default_rules.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &builtin); err != nil || len(builtin.Rules) == 0 {
		t.Fatalf("default_rules.json: %v (%d rules)", err, len(builtin.Rules))
	}
	for _, r := range builtin.Rules {
		if !alerts[r.Name] {
			t.Errorf("built-in rule %s has no Prometheus alert in %s", r.Name, path)
		}
	}
	if !strings.Contains(out, fmt.Sprintf("%d rules found", len(alerts))) {
		t.Errorf("promtool found a different number of rules than the %d alerts: %s", len(alerts), out)
	}
	// Each alert fires on the input that fires its built-in rule, and
	// not on the quiet series beside it (deploy/monitoring/alerts_test.yml).
	out = runPromtool(t, nil, "test", "rules", "deploy/monitoring/alerts_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: %s", out)
	}
	tests, err := os.ReadFile(filepath.Join(monitoringDir(t), "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range builtin.Rules {
		if !regexp.MustCompile(`(?m)^\s*alertname:\s*` + regexp.QuoteMeta(r.Name) + `\s*\n\s*exp_alerts:\s*\n\s*- exp_labels`).Match(tests) {
			t.Errorf("alerts_test.yml does not expect %s to fire", r.Name)
		}
	}
}

// promqlNames returns the metric names an expression selects: identifiers
// outside strings, label matchers, ranges and grouping clauses, that are
// neither functions nor keywords.
func promqlNames(expr string) []string {
	for _, re := range []string{`"(?:[^"\\]|\\.)*"`, `\{[^}]*\}`, `\[[^\]]*\]`, `\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`} {
		expr = regexp.MustCompile(re).ReplaceAllString(expr, " ")
	}
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "inf": true, "nan": true}
	var out []string
	for _, m := range regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)\s*(\(?)`).FindAllStringSubmatchIndex(expr, -1) {
		name, call := expr[m[2]:m[3]], m[4] != m[5]
		if m[2] > 0 && (expr[m[2]-1] >= '0' && expr[m[2]-1] <= '9' || expr[m[2]-1] == '.') {
			continue // a number's exponent or unit, as in 1e-3
		}
		if !call && !keywords[strings.ToLower(name)] {
			out = append(out, name)
		}
	}
	return out
}

func TestPromQLNames(t *testing.T) {
	got := promqlNames(`histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{http_route=~"/api/.+", job="a"}[5m]))) > 1e-3 and on (x) up offset 5m`)
	if fmt.Sprint(got) != "[http_server_request_duration_seconds_bucket up]" {
		t.Errorf("names = %v", got)
	}
}

// TestShippedGrafanaDashboard: every PromQL expression of the shipped
// Grafana dashboard selects only metric names that a scrape of the
// server (with PostgreSQL and Redis, after a load of every endpoint)
// has, and so does every expression of the shipped alert rules.
func TestShippedGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(monitoringDir(t), "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	exprs := map[string]string{}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			exprs[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	rules, err := os.ReadFile(filepath.Join(monitoringDir(t), "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range regexp.MustCompile(`(?m)^\s*expr:\s*(.+)$`).FindAllStringSubmatch(string(rules), -1) {
		exprs[fmt.Sprintf("alerts.yml expr %d", i)] = strings.Trim(strings.TrimSpace(m[1]), `'`)
	}
	if len(dash.Panels) < 5 || len(exprs) < 10 {
		t.Fatalf("%d panels, %d expressions: the dashboard or rules are nearly empty", len(dash.Panels), len(exprs))
	}

	text := scrapeAfterLoad(t, true).text
	names := sampleNames(text)
	for where, e := range exprs {
		ns := promqlNames(e)
		if len(ns) == 0 {
			t.Errorf("%s: %q selects no metric", where, e)
		}
		for _, n := range ns {
			if !names[n] {
				t.Errorf("%s: %q selects %s, which a scrape does not have", where, e, n)
			}
		}
	}
}
