package alert

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/observe"
)

// staticSource answers queries from a table keyed by signal and window.
type staticSource map[string][]observe.Sample

func (s staticSource) Query(q observe.Query) ([]observe.Sample, error) {
	if v, ok := s[q.Signal+"/"+q.Window.String()]; ok {
		return v, nil
	}
	if q.Signal == "redis_up" {
		return nil, errors.New("boom")
	}
	return s[q.Signal], nil
}

func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestExprEval(t *testing.T) {
	src := staticSource{
		"route_latency_p95/1m0s": {
			{Labels: lbl("method", "GET", "route", "/a"), Value: 1.2},
			{Labels: lbl("method", "GET", "route", "/b"), Value: 0.3},
			{Labels: lbl("method", "GET", "route", "/c"), Value: 2},
		},
		"route_latency_p95/5m0s": {{Labels: lbl("method", "GET", "route", "/a"), Value: 0.5}},
		"route_requests/1m0s": {
			{Labels: lbl("method", "GET", "route", "/a"), Value: 50},
			{Labels: lbl("method", "GET", "route", "/b"), Value: 50},
			{Labels: lbl("method", "GET", "route", "/c"), Value: 3},
		},
		"pool_utilisation": {{Labels: lbl(), Value: 0.5}},
		"pool_health":      {{Labels: lbl(), Value: 70}},
		"cache_hit_ratio/5m0s": {
			{Labels: lbl("route", "/a"), Value: 0.8},
			{Labels: lbl("route", "/b"), Value: 0.95},
		},
	}
	tests := []struct {
		expr string
		want []string // routes (or "-" for a label-less match)
	}{
		{"route_latency_p95[1m] > 1s", []string{"/a", "/c"}},
		{"route_latency_p95 > 1000ms", []string{"/a", "/c"}},
		{"route_latency_p95[5m] > 1s", nil},
		{"route_latency_p95[1m] > 1s and route_requests[1m] >= 10", []string{"/a"}},
		{`route_latency_p95{route!="/a"} > 1s`, []string{"/c"}},
		{`route_latency_p95{route="/a", method="GET"} > 1s`, []string{"/a"}},
		{`route_latency_p95{method="POST"} > 1s`, nil},
		{"pool_utilisation > 80% or pool_health < 80", []string{"-"}},
		{"pool_utilisation > 80%", nil},
		{"pool_utilisation > 0.4 and pool_health < 80", []string{"-"}},
		{"cache_hit_ratio[5m] < 85%", []string{"/a"}},
		{"(cache_hit_ratio[5m] < 85% or cache_hit_ratio[5m] > 90%) and pool_health < 80", []string{"/a", "/b"}},
		{"route_latency_p95 > 1s or route_latency_p95 > 1.5", []string{"/a", "/c"}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := ParseExpr(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := e.Eval(src)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				r := m.Labels["route"]
				if r == "" {
					r = "-"
				}
				got = append(got, r)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("matches = %v, want %v", got, tc.want)
			}
		})
	}
	e, _ := ParseExpr("redis_up == 0")
	if _, err := e.Eval(src); err == nil {
		t.Error("a failing source gave no error")
	}
}

func TestParseExprErrors(t *testing.T) {
	for _, src := range []string{
		"",
		"nope > 1",
		"route_latency_p95",
		"route_latency_p95 >",
		"route_latency_p95 > x",
		"route_latency_p95[10m] > 1s",
		"route_latency_p95[1m > 1s",
		`route_latency_p95{route} > 1s`,
		`route_latency_p95{route="x" > 1s`,
		`route_latency_p95{route="x} > 1s`,
		"route_latency_p95 > 1s and",
		"(route_latency_p95 > 1s",
		"route_latency_p95 > 1s extra",
		"route_latency_p95 ~ 1",
	} {
		if _, err := ParseExpr(src); err == nil {
			t.Errorf("ParseExpr(%q) succeeded", src)
		}
	}
}

func FuzzParseExpr(f *testing.F) {
	for _, r := range DefaultRules() {
		f.Add(r.Expr.String())
	}
	f.Add(`cache_hit_ratio[5m]{route!="/x", tier="local"} < 85% or (pool_health < 80)`)
	f.Add(`route_latency_p95 > "`)
	f.Fuzz(func(t *testing.T, src string) {
		e, err := ParseExpr(src)
		if err != nil {
			return
		}
		if _, err := e.Eval(staticSource{}); err != nil && !strings.Contains(err.Error(), "boom") {
			t.Fatalf("eval of %q: %v", src, err)
		}
	})
}

func TestDefaultRules(t *testing.T) {
	rules := DefaultRules()
	names := map[string]bool{}
	for _, r := range rules {
		names[r.Name] = true
		if r.Expr == nil || r.Severity == "" || r.Summary == "" {
			t.Errorf("rule %+v incomplete", r)
		}
	}
	for _, n := range []string{"RouteLatencyHigh", "CacheHitRatioLow", "DatabasePoolSaturated", "RedisDown", "PolicyFallbackRateHigh", "AICostSavingLow"} {
		if !names[n] {
			t.Errorf("default rule %s missing", n)
		}
	}
}

func TestParseRulesErrors(t *testing.T) {
	for name, src := range map[string]string{
		"no rules":     `{"rules": []}`,
		"bad json":     `{"rules": [}`,
		"unknown key":  `{"rules": [{"name": "a", "expr": "pool_health < 1", "oops": 1}]}`,
		"no name":      `{"rules": [{"expr": "pool_health < 1"}]}`,
		"duplicate":    `{"rules": [{"name": "a", "expr": "pool_health < 1"}, {"name": "a", "expr": "pool_health < 2"}]}`,
		"bad expr":     `{"rules": [{"name": "a", "expr": "pool_health <"}]}`,
		"bad for":      `{"rules": [{"name": "a", "expr": "pool_health < 1", "for": "soon"}]}`,
		"bad keep":     `{"rules": [{"name": "a", "expr": "pool_health < 1", "keep_firing_for": "-1s"}]}`,
		"bad severity": `{"rules": [{"name": "a", "expr": "pool_health < 1", "severity": "meh"}]}`,
	} {
		if _, err := ParseRules([]byte(src)); err == nil {
			t.Errorf("%s: ParseRules succeeded", name)
		}
	}
	rules, err := ParseRules([]byte(`{"rules": [{"name": "a", "expr": "pool_health < 1", "for": "30s"}]}`))
	if err != nil || len(rules) != 1 || rules[0].For != 30*time.Second || rules[0].Severity != SeverityWarning {
		t.Errorf("ParseRules = %+v, %v", rules, err)
	}
}

func TestSummaryTemplate(t *testing.T) {
	r := Rule{Name: "x", Summary: "{{method}} {{route}}: {{ms}} / {{pct}} / {{value}} {{missing}}"}
	got := r.summarise(lbl("method", "GET", "route", "/a"), 1.25)
	if want := "GET /a: 1250 ms / 125.0% / 1.25 {{missing}}"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
}

func TestWebhookDoesNotRetryClientErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	wh := NewWebhook(WebhookConfig{URL: srv.URL, Backoff: time.Millisecond})
	wh.Notify(context.Background(), Event{Alert: Alert{Rule: "a", State: StatePending}})
	wh.Notify(context.Background(), Event{Alert: Alert{Rule: "a", State: StateFiring}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wh.Close(ctx)
	if n := calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1 (pending not sent, 400 not retried)", n)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	wh := NewWebhook(WebhookConfig{URL: srv.URL, Backoff: time.Millisecond, Attempts: 3})
	wh.Notify(context.Background(), Event{Alert: Alert{Rule: "a", State: StateResolved}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wh.Close(ctx)
	if n := calls.Load(); n != 3 {
		t.Errorf("calls = %d, want 3 attempts", n)
	}
}
