package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/dashboard"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/simulated"
	"github.com/wingman-app/wingate/host/observe"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/pgstore"
	"github.com/wingman-app/wingate/sdk/abi"
)

var (
	obsWasmOnce sync.Once
	obsWasm     []byte
	obsWasmErr  error
)

// observedCachePolicy builds plugins/cache for wasip1 once per test binary
// and serves it from a new Engine that reports to obs.
func observedCachePolicy(tb testing.TB, obs policy.Observer) *policy.Engine {
	tb.Helper()
	root := testkit.RepoRoot(tb)
	obsWasmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wingate-observe-plugin-")
		if err != nil {
			obsWasmErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "cache.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./plugins/cache")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			obsWasmErr = fmt.Errorf("build plugins/cache: %v\n%s", err, b)
			return
		}
		obsWasm, obsWasmErr = os.ReadFile(out)
	})
	if obsWasmErr != nil {
		tb.Fatal(obsWasmErr)
	}
	ctx := context.Background()
	rt, err := policy.NewRuntime(ctx, policy.Options{Observer: obs})
	if err != nil {
		tb.Fatal(err)
	}
	v, err := rt.Load(ctx, policy.Spec{Name: "cache", Config: cachePolicyConfig(root)}, obsWasm)
	if err != nil {
		tb.Fatal(err)
	}
	eng := policy.NewEngine(policy.EngineOptions{Observer: obs})
	if _, err := eng.Activate(abi.KindCache, v); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close(); rt.Close(context.Background()) })
	return eng
}

// observedHost is a server with every observed part real: PostgreSQL
// through pgstore (its own database), the two-tier cache on Redis (its
// own key prefix), the default cache policy in the policy engine, the AI
// chat on the simulated provider, metrics, alerts and the dashboard, on a
// real listener.
type observedHost struct {
	url    string
	m      *observe.Metrics
	alerts *alert.Manager
	dash   *dashboard.Dashboard
	token  string
	srv    *Server
	client *http.Client
}

func newObservedHost(tb testing.TB, rules ...alert.Rule) *observedHost {
	tb.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	m, err := observe.New(observe.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	h := &observedHost{m: m, client: &http.Client{Timeout: 30 * time.Second}}

	dbURL, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_server_observe")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = drop() })
	st, err := pgstore.Open(ctx, pgstore.Config{URL: dbURL, Observer: m})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Seed(ctx, pgstore.SeedOptions{Users: 50}); err != nil {
		tb.Fatal(err)
	}
	m.WatchPool(st)

	a, err := auth.New(auth.RandomSecret())
	if err != nil {
		tb.Fatal(err)
	}
	if h.token, err = a.Issue(1, time.Hour); err != nil {
		tb.Fatal(err)
	}

	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "wingate-test-observe-" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
		rdb.Close()
	})
	cc, err := cache.New(cache.Config{Prefix: prefix, Redis: rdb, Observer: m.CacheObserver(), Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cc.Close)
	m.ObserveRedisBreaker(observe.BreakerClosed)

	eng := observedCachePolicy(tb, m.PolicyObserver())
	m.SetActivePolicies(eng.ActivePolicies)
	svc, err := chat.New(chat.Config{Store: st, Decider: eng, Tiers: llm.DefaultTiers("simulated"),
		Providers: map[string]llm.Provider{"simulated": simulated.New(simulated.Options{})},
		Observer:  m.ChatObserver(), Log: log})
	if err != nil {
		tb.Fatal(err)
	}

	var notify notifyLater
	if len(rules) == 0 {
		rules = alert.DefaultRules()
	}
	h.alerts = alert.New(alert.Config{Rules: rules, Source: m, Interval: time.Second,
		Notifiers: []alert.Notifier{alert.LogNotifier{Logger: log}, &notify}})
	h.dash = dashboard.New(dashboard.Config{Metrics: m, Alerts: h.alerts, Interval: 300 * time.Millisecond})
	notify.set(h.dash)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { h.alerts.Run(actx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })

	h.srv = New(DefaultConfig(), Deps{Logger: log, Store: st, Auth: a, Cache: cc, Policies: eng, Chat: svc,
		Metrics: m, Dashboard: h.dash, Alerts: h.alerts})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	// The operators' listener: it serves the API and /metrics and
	// /dashboard, which this host's tests read.
	go h.srv.ServeOps(ln)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
	})
	h.url = "http://" + ln.Addr().String()
	return h
}

// do sends one request (with the user's token when auth is true) and
// returns the status and body.
func (h *observedHost) do(tb testing.TB, method, path string, auth bool, body string) (int, []byte) {
	tb.Helper()
	req, err := newRequest(method, h.url+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	res, err := h.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, b
}

// traffic sends a mix touching every observed part: cached reads (misses
// then hits), a per-user read, an unmatched path, an auth failure, and
// chat messages (policy decisions, model calls, queries).
func (h *observedHost) traffic(tb testing.TB, rounds int) {
	tb.Helper()
	for i := range rounds {
		h.do(tb, "GET", "/api/challenges", true, "")
		h.do(tb, "GET", "/api/users/1/reputation", true, "")
		h.do(tb, "GET", "/healthz", false, "")
		if i%5 == 0 {
			h.do(tb, "GET", fmt.Sprintf("/no/such/path/%d", i), false, "")
			h.do(tb, "GET", "/api/users/1/matches", false, "")
		}
	}
	code, b := h.do(tb, "POST", "/api/chat/sessions", true, `{"title":"metrics"}`)
	if code != 201 {
		tb.Fatalf("create chat session: %d %s", code, b)
	}
	var sess struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &sess); err != nil {
		tb.Fatal(err)
	}
	for _, text := range []string{"hi there!", "How do I start a conversation with a stranger at a coffee shop without feeling awkward?"} {
		if code, b := h.do(tb, "POST", "/api/chat/sessions/"+sess.ID+"/messages", true, fmt.Sprintf(`{"text":%q}`, text)); code != 200 {
			tb.Fatalf("chat message: %d %s", code, b)
		}
	}
}

func newRequest(method, url, body string) (*http.Request, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err == nil && body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

func (h *observedHost) scrape(tb testing.TB) map[string]*dto.MetricFamily {
	tb.Helper()
	code, b := h.do(tb, "GET", "/metrics", false, "")
	if code != 200 {
		tb.Fatalf("/metrics: %d %s", code, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return fams
}

// series returns the metrics of family name whose labels include want.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
	for _, mt := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range mt.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			if v == "*" {
				ok = ok && labels[k] != ""
			} else {
				ok = ok && labels[k] == v
			}
		}
		if ok {
			out = append(out, mt)
		}
	}
	return out
}

func value(mt *dto.Metric) float64 {
	switch {
	case mt.Counter != nil:
		return mt.Counter.GetValue()
	case mt.Gauge != nil:
		return mt.Gauge.GetValue()
	case mt.Histogram != nil:
		return float64(mt.Histogram.GetSampleCount())
	}
	return 0
}

// TestMetricsScrape sends traffic through every observed part, scrapes
// /metrics, parses it with the Prometheus text parser and checks each
// family with its labels.
func TestMetricsScrape(t *testing.T) {
	h := newObservedHost(t)
	h.traffic(t, 20)
	fams := h.scrape(t)

	tests := []struct {
		family string
		typ    dto.MetricType
		labels map[string]string
		min    float64 // the summed value (sample count for histograms) is at least this
	}{
		{"http_server_request_duration_seconds", dto.MetricType_HISTOGRAM,
			map[string]string{"http_request_method": "GET", "http_route": "/api/challenges", "http_response_status_code": "200"}, 20},
		{"http_server_request_duration_seconds", dto.MetricType_HISTOGRAM,
			map[string]string{"http_request_method": "GET", "http_route": "/api/users/:id/reputation", "http_response_status_code": "200"}, 20},
		{"http_server_request_duration_seconds", dto.MetricType_HISTOGRAM,
			map[string]string{"http_request_method": "GET", "http_route": observe.UnmatchedRoute, "http_response_status_code": "404"}, 4},
		{"http_server_request_duration_seconds", dto.MetricType_HISTOGRAM,
			map[string]string{"http_request_method": "GET", "http_route": "/api/users/:id/matches", "http_response_status_code": "401"}, 4},
		{"http_server_request_duration_seconds", dto.MetricType_HISTOGRAM,
			map[string]string{"http_request_method": "POST", "http_route": "/api/chat/sessions/:id/messages", "http_response_status_code": "200"}, 2},
		{"wingate_cache_requests_total", dto.MetricType_COUNTER,
			map[string]string{"http_route": "/api/challenges", "cache_tier": "local", "cache_result": "hit"}, 15},
		{"wingate_cache_requests_total", dto.MetricType_COUNTER,
			map[string]string{"http_route": "/api/challenges", "cache_tier": "origin", "cache_result": "miss"}, 1},
		{"wingate_cache_redis_up", dto.MetricType_GAUGE, map[string]string{}, 1},
		{"wingate_cache_redis_breaker_state", dto.MetricType_GAUGE, map[string]string{"state": "closed"}, 1},
		// 40 cache decisions, nearly all ok: on a machine loaded by other
		// work one may pass its deadline (outcome timeout).
		{"wingate_policy_decisions_total", dto.MetricType_COUNTER,
			map[string]string{"policy_kind": "cache", "policy_name": "cache", "policy_version": "*", "policy_outcome": "*"}, 40},
		{"wingate_policy_decisions_total", dto.MetricType_COUNTER,
			map[string]string{"policy_kind": "cache", "policy_name": "cache", "policy_version": "*", "policy_outcome": "ok"}, 36},
		{"wingate_policy_decisions_total", dto.MetricType_COUNTER,
			map[string]string{"policy_kind": "route", "policy_outcome": "fallback"}, 2},
		{"wingate_policy_decision_duration_seconds", dto.MetricType_HISTOGRAM,
			map[string]string{"policy_kind": "cache", "policy_version": "*", "policy_outcome": "*"}, 40},
		{"db_client_connections_usage", dto.MetricType_GAUGE, map[string]string{"db_client_connection_state": "idle"}, 0},
		{"db_client_connections_usage", dto.MetricType_GAUGE, map[string]string{"db_client_connection_state": "used"}, 0},
		{"db_client_connection_max", dto.MetricType_GAUGE, map[string]string{}, 1},
		{"wingate_db_pool_utilization_ratio", dto.MetricType_GAUGE, map[string]string{}, 0},
		{"wingate_db_pool_health", dto.MetricType_GAUGE, map[string]string{}, 1},
		{"db_client_operation_duration_seconds", dto.MetricType_HISTOGRAM,
			map[string]string{"db_operation_name": "*", "db_response_outcome": "ok"}, 5},
		{"wingate_llm_requests_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*", "llm_model": "*", "outcome": "ok"}, 2},
		{"wingate_llm_tokens_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*", "llm_model": "*", "llm_token_type": "input"}, 1},
		{"wingate_llm_tokens_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*", "llm_model": "*", "llm_token_type": "output"}, 1},
		{"wingate_llm_cost_usd_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*", "llm_model": "*"}, 1e-9},
		{"wingate_llm_baseline_cost_usd_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*"}, 1e-9},
		{"wingate_llm_cost_saved_usd_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*"}, 0},
		{"wingate_llm_turns_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*"}, 2},
		{"wingate_llm_context_tokens_saved_total", dto.MetricType_COUNTER, map[string]string{"llm_tier": "*"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.family+fmt.Sprint(tc.labels), func(t *testing.T) {
			f := fams[tc.family]
			if f == nil {
				t.Fatalf("family %s missing", tc.family)
			}
			if f.GetType() != tc.typ {
				t.Fatalf("family %s is %s, want %s", tc.family, f.GetType(), tc.typ)
			}
			ms := series(fams, tc.family, tc.labels)
			if len(ms) == 0 {
				t.Fatalf("no %s series with labels %v; have %v", tc.family, tc.labels, f.GetMetric())
			}
			var sum float64
			for _, mt := range ms {
				sum += value(mt)
			}
			if sum < tc.min {
				t.Errorf("%s%v = %v, want at least %v", tc.family, tc.labels, sum, tc.min)
			}
		})
	}

	// The HTTP histogram has the latency buckets, in seconds.
	hist := series(fams, "http_server_request_duration_seconds", map[string]string{"http_route": "/api/challenges"})[0].GetHistogram()
	var bounds []float64
	for _, b := range hist.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) {
			bounds = append(bounds, b.GetUpperBound())
		}
	}
	if fmt.Sprint(bounds) != fmt.Sprint(observe.HTTPDurationBuckets) {
		t.Errorf("buckets = %v, want %v", bounds, observe.HTTPDurationBuckets)
	}
	if hist.GetSampleSum() <= 0 || hist.GetSampleSum() > 20 {
		t.Errorf("sample sum = %v s for 20 fast requests", hist.GetSampleSum())
	}
	// No raw path ever becomes a label.
	for _, mt := range fams["http_server_request_duration_seconds"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if strings.Contains(l.GetValue(), "/no/such/path") {
				t.Errorf("raw path in label %s=%s", l.GetName(), l.GetValue())
			}
		}
	}
	// The pool gauges agree with the store.
	if ms := series(fams, "wingate_db_pool_health", nil); len(ms) == 1 {
		if st, _ := h.m.Pool(); float64(st.Health) != ms[0].GetGauge().GetValue() && st.Health < 50 {
			t.Errorf("pool health gauge %v, store says %d", ms[0].GetGauge().GetValue(), st.Health)
		}
	}
}

// TestAlertsEndpoint lists active and recent alerts as JSON.
func TestAlertsEndpoint(t *testing.T) {
	m, err := observe.New(observe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveRedisBreaker(observe.BreakerOpen)
	rules, err := alert.ParseRules([]byte(`{"rules": [{"name": "RedisDown", "expr": "redis_up == 0", "severity": "critical"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	mgr := alert.New(alert.Config{Rules: rules, Source: m})
	mgr.Eval(context.Background())
	s := New(DefaultConfig(), Deps{Alerts: mgr})
	res, err := s.App().Test(httptest.NewRequest("GET", "/api/alerts", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	var l alert.Listing
	if err := json.NewDecoder(res.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || len(l.Active) != 1 || l.Active[0].Rule != "RedisDown" || l.Active[0].State != alert.StateFiring || l.Recent == nil {
		t.Errorf("GET /api/alerts = %d %+v", res.StatusCode, l)
	}
}

var _ store.PoolStatser = (*pgstore.Store)(nil)

// notifyLater forwards to a notifier set after the alert manager is built
// (the dashboard needs the manager, the manager notifies the dashboard).
type notifyLater struct {
	mu sync.Mutex
	n  alert.Notifier
}

func (l *notifyLater) set(n alert.Notifier) { l.mu.Lock(); l.n = n; l.mu.Unlock() }

func (l *notifyLater) Notify(ctx context.Context, ev alert.Event) {
	l.mu.Lock()
	n := l.n
	l.mu.Unlock()
	if n != nil {
		n.Notify(ctx, ev)
	}
}
