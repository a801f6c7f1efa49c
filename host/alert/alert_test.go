package alert

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/observe"
)

// fakeClock is a manual clock whose tickers fire when it is advanced.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	c    chan time.Time
	d    time.Duration
	next time.Time
}

func (f *fakeTicker) C() <-chan time.Time { return f.c }
func (f *fakeTicker) Stop()               {}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{c: make(chan time.Time, 1), d: d, next: c.now.Add(d)}
	c.tickers = append(c.tickers, t)
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.tickers {
		for !t.next.After(c.now) {
			select {
			case t.c <- c.now:
			default:
			}
			t.next = t.next.Add(t.d)
		}
	}
}

func (c *fakeClock) tickerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tickers)
}

// recorder is a Notifier that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Notify(_ context.Context, ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) states() []State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []State
	for _, e := range r.events {
		out = append(out, e.State)
	}
	return out
}

func rule(t *testing.T, name string) Rule {
	t.Helper()
	for _, r := range DefaultRules() {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no default rule %s", name)
	return Rule{}
}

// webhookReceiver is an httptest server that fails the first request with
// 503 and records the payloads of the others.
type webhookReceiver struct {
	srv      *httptest.Server
	calls    atomic.Int32
	mu       sync.Mutex
	payloads []WebhookPayload
	got      chan WebhookPayload
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	w := &webhookReceiver{got: make(chan WebhookPayload, 16)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		n := w.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook request %s with content type %q", r.Method, r.Header.Get("Content-Type"))
		}
		if n == 1 {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var p WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("webhook payload %s: %v", body, err)
		}
		w.mu.Lock()
		w.payloads = append(w.payloads, p)
		w.mu.Unlock()
		w.got <- p
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) next(t *testing.T) WebhookPayload {
	t.Helper()
	select {
	case p := <-w.got:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook payload within 10 s")
	}
	return WebhookPayload{}
}

// TestRouteLatencyAlertLifecycle drives one route's latency over the
// shipped 1 s P95 threshold and back, through the real rolling windows and
// the evaluation loop on a fake clock, and checks pending → firing →
// resolved and the webhook payloads (the first POST fails and is retried).
func TestRouteLatencyAlertLifecycle(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	m, err := observe.New(observe.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	hook := newWebhookReceiver(t)
	wh := NewWebhook(WebhookConfig{URL: hook.srv.URL, Source: "test", Backoff: 20 * time.Millisecond})
	defer wh.Close(context.Background())
	rec := &recorder{}
	r := rule(t, "RouteLatencyHigh")
	mgr := New(Config{Rules: []Rule{r}, Source: m, Notifiers: []Notifier{rec, wh}, Clock: clk, Interval: 5 * time.Second})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { mgr.Run(ctx); close(done) }()
	waitFor(t, func() bool { return clk.tickerCount() == 1 }, "the loop's ticker")

	// step advances the clock by 5 s after recording 5 requests of each
	// route, then waits for the evaluation at the new time.
	step := func(slow time.Duration) {
		t.Helper()
		for i := range 5 {
			now := clk.Now().Add(time.Duration(i) * time.Second)
			m.ObserveHTTP("GET", "/api/slow", 200, slow, now)
			m.ObserveHTTP("GET", "/api/fast", 200, 12*time.Millisecond, now)
		}
		clk.Advance(5 * time.Second)
		want := clk.Now()
		waitFor(t, func() bool { return mgr.List().EvaluatedAt.Equal(want) }, "an evaluation")
	}
	state := func() State {
		l := mgr.List()
		for _, a := range l.Active {
			if a.Labels["route"] == "/api/fast" {
				t.Fatalf("the fast route alerts: %+v", a)
			}
		}
		if len(l.Active) == 0 {
			if len(l.Recent) > 0 {
				return l.Recent[0].State
			}
			return ""
		}
		return l.Active[0].State
	}

	// Slow: 1.5 s per request. Ten requests are needed before the rule
	// holds; then it is pending for a minute, then firing.
	step(1500 * time.Millisecond)
	if s := state(); s != "" {
		t.Fatalf("after 5 requests: state %q, want none", s)
	}
	step(1500 * time.Millisecond)
	if s := state(); s != StatePending {
		t.Fatalf("after 10 slow requests: state %q, want pending", s)
	}
	pendingAt := clk.Now()
	for clk.Now().Sub(pendingAt) < r.For {
		if s := state(); s != StatePending {
			t.Fatalf("%s after pending: state %q, want pending", clk.Now().Sub(pendingAt), s)
		}
		step(1500 * time.Millisecond)
	}
	if s := state(); s != StateFiring {
		t.Fatalf("%s after pending: state %q, want firing", clk.Now().Sub(pendingAt), s)
	}
	firing := hook.next(t)
	if firing.Status != StateFiring || firing.From != StatePending || firing.Version != "1" || firing.Source != "test" {
		t.Errorf("firing payload = %+v", firing)
	}
	a := firing.Alert
	if a.Rule != "RouteLatencyHigh" || a.Labels["route"] != "/api/slow" || a.Labels["method"] != "GET" || a.Severity != SeverityWarning {
		t.Errorf("firing alert = %+v", a)
	}
	if a.Value < 1.4 || a.Value > 1.6 {
		t.Errorf("firing value = %v, want about 1.5 (s)", a.Value)
	}
	if !strings.Contains(a.Summary, "GET /api/slow") || !a.ActiveAt.Equal(pendingAt) || a.FiredAt.IsZero() {
		t.Errorf("firing alert summary %q active %s fired %s", a.Summary, a.ActiveAt, a.FiredAt)
	}
	if hook.calls.Load() < 2 {
		t.Errorf("webhook calls = %d, want the 503 and its retry", hook.calls.Load())
	}

	// Fast again: the slow requests leave the one-minute window, then the
	// alert keeps firing for KeepFiringFor before it resolves.
	var clearedAt time.Time
	for i := 0; i < 100 && state() == StateFiring; i++ {
		step(20 * time.Millisecond)
		samples, _ := m.Query(observe.Query{Signal: "route_latency_p95", Window: time.Minute})
		for _, s := range samples {
			if s.Labels["route"] == "/api/slow" && s.Value < 1 && clearedAt.IsZero() {
				clearedAt = clk.Now()
			}
		}
	}
	if s := state(); s != StateResolved {
		t.Fatalf("state %q after the route is fast again, want resolved", s)
	}
	if clearedAt.IsZero() {
		t.Fatal("P95 never went under 1 s")
	}
	resolved := hook.next(t)
	// The last evaluation that held was the one before the P95 cleared;
	// the alert resolves keep_firing_for after it.
	lastTrue := resolved.Alert.LastTrueAt
	if want := clearedAt.Add(-5 * time.Second); !lastTrue.Equal(want) {
		t.Errorf("last true at %s, want %s", lastTrue, want)
	}
	if held := resolved.Alert.ResolvedAt.Sub(lastTrue); held < r.KeepFiringFor || held > r.KeepFiringFor+5*time.Second {
		t.Errorf("resolved %s after the expression last held, want keep_firing_for %s (+ one interval)", held, r.KeepFiringFor)
	}
	if resolved.Status != StateResolved || resolved.From != StateFiring || resolved.Alert.ResolvedAt.IsZero() ||
		resolved.Alert.Labels["route"] != "/api/slow" || !resolved.Alert.FiredAt.Equal(a.FiredAt) {
		t.Errorf("resolved payload = %+v", resolved)
	}
	if got, want := strings.Join(statesStr(rec.states()), ","), "pending,firing,resolved"; got != want {
		t.Errorf("notified states = %s, want %s", got, want)
	}
	l := mgr.List()
	if len(l.Active) != 0 || len(l.Recent) != 1 || l.Recent[0].State != StateResolved {
		t.Errorf("listing = %+v", l)
	}
	cancel()
	<-done
	hook.mu.Lock()
	n := len(hook.payloads)
	hook.mu.Unlock()
	if n != 2 {
		t.Errorf("webhook payloads = %d, want 2 (pending is not sent)", n)
	}
}

func statesStr(s []State) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = string(x)
	}
	return out
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
