package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI imitates the Wingate API closely enough for the load generator:
// tokens are "t<user>", per-user routes check the token's user, the
// catalogue answers MISS then HIT per path, odd users have no location,
// and chat replies carry fixed cost and context figures.
type fakeAPI struct {
	mu    sync.Mutex
	seen  map[string]bool
	delay time.Duration
	fail  map[string]int // path prefix segment → status to answer
	// sessions are the users with a chat session ("s<user>"); created
	// counts the sessions opened through the API.
	sessions map[string]bool
	created  int
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{seen: map[string]bool{}, fail: map[string]int{}, sessions: map[string]bool{}}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	user := func() (string, bool) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer t")
		return tok, tok != "" && tok != r.Header.Get("Authorization")
	}
	switch {
	case len(parts) >= 2 && parts[0] == "api" && parts[1] == "challenges" && r.Method == http.MethodGet:
		f.mu.Lock()
		key := r.URL.String()
		hit := f.seen[key]
		f.seen[key] = true
		f.mu.Unlock()
		if hit {
			w.Header().Set("X-Cache", "HIT")
		} else {
			w.Header().Set("X-Cache", "MISS")
		}
		w.Write([]byte(`[]`))
	case len(parts) == 4 && parts[1] == "challenges" && parts[3] == "complete":
		if _, ok := user(); !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	case len(parts) == 4 && parts[1] == "users":
		u, ok := user()
		if !ok || u != parts[2] {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if st := f.fail[parts[3]]; st != 0 {
			w.WriteHeader(st)
			return
		}
		if parts[3] == "location" && r.Method == http.MethodGet {
			var n int
			fmt.Sscan(u, &n)
			if n%2 == 1 {
				w.WriteHeader(http.StatusNotFound)
				return
			}
		}
		if parts[3] == "location" && r.Method == http.MethodPut {
			var body struct{ Lat, Lon *float64 }
			if json.NewDecoder(r.Body).Decode(&body) != nil || body.Lat == nil || body.Lon == nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("X-Cache", "BYPASS")
		w.Write([]byte(`{}`))
	case r.URL.Path == "/api/chat/sessions" && r.Method == http.MethodGet:
		u, ok := user()
		if !ok || r.URL.Query().Get("limit") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		has := f.sessions[u]
		f.mu.Unlock()
		if has {
			fmt.Fprintf(w, `{"items":[{"id":"s%s"}]}`, u)
		} else {
			w.Write([]byte(`{"items":[]}`))
		}
	case r.URL.Path == "/api/chat/sessions" && r.Method == http.MethodPost:
		u, ok := user()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		f.sessions[u] = true
		f.created++
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"s%s"}`, u)
	case len(parts) == 5 && parts[2] == "sessions" && parts[4] == "messages":
		u, ok := user()
		if !ok || parts[3] != "s"+u {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		var body struct{ Text *string }
		if json.NewDecoder(r.Body).Decode(&body) != nil || body.Text == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Write([]byte(`{"message":{"role":"user"},"reply":{"tier":"economy","input_tokens":120,"output_tokens":30,"cost_usd":0.001,"baseline_cost_usd":0.01,"context_tokens":100,"baseline_context_tokens":1000}}`))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func fakeTokens(user int64) (string, error) { return fmt.Sprintf("t%d", user), nil }

func TestClosedLoopMix(t *testing.T) {
	srv := httptest.NewServer(newFakeAPI())
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		Target: srv.URL, Connections: 4, Requests: 400, Duration: time.Minute, Users: 50, Tokens: fakeTokens,
	})
	if err != nil {
		t.Fatal(err)
	}
	var drawn int64
	for name, e := range rep.Endpoints {
		if name != EpChatSession {
			drawn += e.Requests
		}
	}
	if rep.ConnectionsOpened != 4 {
		t.Errorf("connections opened: %d, want 4 (one kept-alive connection per worker)", rep.ConnectionsOpened)
	}
	if drawn != 400 {
		t.Errorf("requests drawn from the mix: %d, want exactly 400", drawn)
	}
	for name := range DefaultMix {
		if rep.Endpoints[name].Requests == 0 {
			t.Errorf("endpoint %s never requested in 400 draws", name)
		}
	}
	// Every failure would be a bug in the generator's requests: the fake
	// checks tokens, ownership and bodies.
	if len(rep.Errors) != 0 {
		t.Errorf("errors %v, want none", rep.Errors)
	}
	if n := rep.Endpoints[EpChatSession].Requests; n == 0 || n > 100 {
		t.Errorf("chat session requests: %d, want 1 to 100 (a look-up and an opening per chatting user)", n)
	}
	chat := rep.Endpoints[EpChat]
	if rep.Chat.Messages != chat.OK {
		t.Errorf("chat replies counted %d, chat requests ok %d", rep.Chat.Messages, chat.OK)
	}
	if rep.Chat.CostSavedPct != 90 || rep.Chat.ContextSavedPct != 90 || rep.Chat.Tiers["economy"] != chat.OK {
		t.Errorf("chat report %+v, want 90%% saved on both and every reply economy", rep.Chat)
	}
	c := rep.Endpoints[EpChallenges].Cache
	if c["HIT"]+c["MISS"] != rep.Endpoints[EpChallenges].Requests || c["MISS"] == 0 || c["HIT"] == 0 {
		t.Errorf("catalogue X-Cache counts %v for %d requests", c, rep.Endpoints[EpChallenges].Requests)
	}
	if rep.Cache["BYPASS"] == 0 {
		t.Errorf("BYPASS answers not counted: %v", rep.Cache)
	}
	hits := rep.Cache["HIT"]
	if want := float64(hits) / float64(hits+rep.Cache["MISS"]); math.Abs(rep.HitRatio-want) > 1e-9 {
		t.Errorf("hit ratio %v, want %v (BYPASS excluded)", rep.HitRatio, want)
	}
	p := rep.Overall
	if !(p.P50MS <= p.P95MS && p.P95MS <= p.P99MS && p.P99MS <= p.MaxMS) || p.MaxMS <= 0 {
		t.Errorf("percentiles out of order: %+v", p)
	}
}

func TestZipfSkew(t *testing.T) {
	var mu sync.Mutex
	perUser := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		perUser[strings.Split(r.URL.Path, "/")[3]]++
		mu.Unlock()
	}))
	defer srv.Close()
	_, err := Run(context.Background(), Config{
		Target: srv.URL, Connections: 2, Requests: 2000, Duration: time.Minute, Users: 1000,
		Mix: Mix{EpReputation: 1}, Tokens: fakeTokens,
	})
	if err != nil {
		t.Fatal(err)
	}
	// With s = 1.1 over 1000 users the most popular user gets far more
	// than the 2 requests a uniform draw would give it.
	if perUser["1"] < 100 || perUser["1"] <= perUser["10"] {
		t.Errorf("user 1: %d requests, user 10: %d; want a Zipf head", perUser["1"], perUser["10"])
	}
	if len(perUser) < 100 {
		t.Errorf("only %d distinct users in 2000 requests; want a long tail", len(perUser))
	}
}

func TestErrorsByStatus(t *testing.T) {
	api := newFakeAPI()
	api.fail["reputation"] = http.StatusInternalServerError
	api.fail["matches"] = http.StatusServiceUnavailable
	srv := httptest.NewServer(api)
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		Target: srv.URL, Connections: 2, Requests: 200, Duration: time.Minute, Users: 20,
		Mix: Mix{EpReputation: 1, EpMatches: 1, EpLocationGet: 1}, Tokens: fakeTokens,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.Errors["500"], rep.Endpoints[EpReputation].Requests; got != want || got == 0 {
		t.Errorf("500s: %d, want %d (every reputation request)", got, want)
	}
	if got, want := rep.Errors["503"], rep.Endpoints[EpMatches].Requests; got != want || got == 0 {
		t.Errorf("503s: %d, want %d", got, want)
	}
	if rep.Errors["404"] != 0 || rep.Endpoints[EpLocationGet].OK != rep.Endpoints[EpLocationGet].Requests {
		t.Errorf("a missing location (404) counted as an error: %v", rep.Errors)
	}
	if rep.Endpoints[EpReputation].P99MS != 0 {
		t.Errorf("percentiles include failed requests: %+v", rep.Endpoints[EpReputation])
	}
	if rep.Endpoints[EpReputation].MaxMS == 0 {
		t.Errorf("max latency leaves out failed answers")
	}
}

// TestRateModeMeasuresFromIntendedTime serves 15 requests scheduled 10 ms
// apart through one connection to a server that takes 20 ms each: the
// last ones are sent late, and their latency must include that wait (the
// schedule slips by ~10 ms per request), not only the 20 ms of service.
func TestRateModeMeasuresFromIntendedTime(t *testing.T) {
	api := newFakeAPI()
	api.delay = 20 * time.Millisecond
	srv := httptest.NewServer(api)
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		Target: srv.URL, Mode: ModeRate, Rate: 100, Connections: 1, Requests: 15, Duration: 10 * time.Second,
		Mix: Mix{EpChallenges: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 15 {
		t.Errorf("requests %d, want 15", rep.Requests)
	}
	// Service alone would give at most a little over 20 ms; the 15th
	// request was due at 140 ms and could not start before ~280 ms.
	if rep.Overall.MaxMS < 100 {
		t.Errorf("max latency %.1f ms: waiting for a connection was not counted (coordinated omission)", rep.Overall.MaxMS)
	}
	if rep.Overall.P50MS < 20 {
		t.Errorf("p50 %.1f ms is below the server's 20 ms service time", rep.Overall.P50MS)
	}
}

func TestDurationBound(t *testing.T) {
	srv := httptest.NewServer(newFakeAPI())
	defer srv.Close()
	start := time.Now()
	rep, err := Run(context.Background(), Config{
		Target: srv.URL, Connections: 2, Duration: 200 * time.Millisecond, Mix: Mix{EpChallenge: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a 200 ms run took %v", took)
	}
	if rep.Requests == 0 || rep.Seconds < 0.2 {
		t.Errorf("report %+v: want requests over at least 0.2 s", rep)
	}
}

func TestRateModeDurationBound(t *testing.T) {
	srv := httptest.NewServer(newFakeAPI())
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		Target: srv.URL, Mode: ModeRate, Rate: 200, Connections: 4, Duration: 250 * time.Millisecond, Mix: Mix{EpChallenge: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for 0.25 s schedules about 50; allow for a slow machine.
	if rep.Requests < 10 || rep.Requests > 51 {
		t.Errorf("requests %d, want about 50 and never more than 51", rep.Requests)
	}
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		target string
		ok     bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://[::1]:8080", true},
		{"http://localhost:8080", true},
		{"http://10.0.0.1:8080", false},
		{"http://0.0.0.0:8080", false},
		{"http://[2001:db8::1]:8080", false},
		{"http://192.168.1.10", false},
		{"ftp://127.0.0.1", false},
		{"127.0.0.1:8080", false},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			_, err := CheckLoopback(context.Background(), tt.target)
			if (err == nil) != tt.ok {
				t.Errorf("CheckLoopback: %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok && strings.Contains(tt.target, "http://") && !strings.HasPrefix(tt.target, "ftp") && !errors.Is(err, ErrNotLoopback) {
				t.Errorf("error %v does not wrap ErrNotLoopback", err)
			}
		})
	}
	if _, err := Run(context.Background(), Config{Target: "http://10.0.0.1:8080", Mix: Mix{EpChallenge: 1}}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Run against 10.0.0.1: %v", err)
	}
	if err := loopbackOnly("tcp", "10.0.0.1:80", nil); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("dial check: %v", err)
	}
	if err := loopbackOnly("tcp", "127.0.0.1:80", nil); err != nil {
		t.Errorf("dial check refused loopback: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"mode", Config{Mode: "burst"}, "mode"},
		{"rate", Config{Mode: ModeRate}, "rate"},
		{"connections", Config{Connections: MaxConnections + 1}, "connections"},
		{"duration", Config{Duration: 2 * MaxDuration}, "duration"},
		{"zipf", Config{ZipfS: 0.5}, "zipf"},
		{"tokens", Config{Mix: Mix{EpReputation: 1}}, "needs tokens"},
		{"mix", Config{Mix: Mix{EpChallenges: 0}}, "sum to zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Target = "http://127.0.0.1:1"
			_, err := Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := ParseMix("challenges=2,chat=1"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"challenges", "weather=1", "chat=-1", "chat_session=1", "chat=x"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.95, 9500 * time.Microsecond}, {0.99, 9900 * time.Microsecond}} {
		got := h.quantile(tt.q)
		if rel := math.Abs(float64(got-tt.want)) / float64(tt.want); rel > 0.016 {
			t.Errorf("q%v = %v, want %v within 1.6%%", tt.q, got, tt.want)
		}
	}
	if h.quantile(1) != 10*time.Millisecond || time.Duration(h.max) != 10*time.Millisecond {
		t.Errorf("max %v, want exactly 10ms", time.Duration(h.max))
	}
	// Buckets are monotonic and each value lies in its bucket's range.
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, math.MaxUint64} {
		b := bucketOf(v)
		if b < prev || b >= len(h.counts) {
			t.Errorf("bucketOf(%d) = %d after %d (len %d)", v, b, prev, len(h.counts))
		}
		prev = b
		if mid := bucketValue(b); v > 128 && math.Abs(float64(mid)-float64(v))/float64(v) > 0.016 {
			t.Errorf("bucket %d midpoint %d is far from %d", b, mid, v)
		}
	}
}

func TestTargets(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	zero := int64(0)
	rep := &Report{
		Requests: 1000, RPS: 500, HitRatio: 0.9,
		Overall: EndpointReport{Requests: 1000, OK: 998},
		Endpoints: map[string]EndpointReport{
			EpChallenges: {Requests: 600, OK: 600, P95MS: 3, P99MS: 8},
			EpChat:       {Requests: 400, OK: 398, P95MS: 700, P99MS: 1200},
		},
		Errors: map[string]int64{"502": 2},
		Chat:   ChatReport{CostSavedPct: 55, ContextSavedPct: 72},
	}
	pass := Targets{
		P95MS: map[string]float64{"*": 1000}, P99MS: map[string]float64{EpChallenges: 50},
		MinCacheHitRatio: f(0.85), MaxErrorRatio: f(0.005), MinChatCostSavedPct: f(40), MinChatContextSavedPct: f(70),
	}
	if !rep.Evaluate(pass) || !*rep.Pass {
		t.Errorf("targets missed: %+v", rep.Checks)
	}
	if len(rep.Checks) != 7 {
		t.Errorf("%d checks, want 7: %+v", len(rep.Checks), rep.Checks)
	}
	fail := Targets{P99MS: map[string]float64{"*": 1000, EpMatches: 50}, Max5xx: &zero}
	if rep.Evaluate(fail) {
		t.Fatal("passed, want chat p99, matches (never requested) and 5xx to fail")
	}
	failed := map[string]bool{}
	for _, c := range rep.Checks {
		if !c.Pass {
			failed[c.Name] = true
		}
	}
	for _, want := range []string{"chat p99 ms", "matches p99 ms (no successful requests)", "5xx responses"} {
		if !failed[want] {
			t.Errorf("check %q did not fail: %+v", want, rep.Checks)
		}
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil || !strings.Contains(b.String(), "FAIL 5xx responses") || !strings.Contains(b.String(), "targets missed") {
		t.Errorf("text report:\n%s", b.String())
	}
}

func TestLoadTargets(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := dir + "/t.json"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := LoadTargets(write(`{"p95_ms": {"*": 1000}, "min_cache_hit_ratio": 0.85}`)); err != nil {
		t.Error(err)
	}
	if d, err := LoadTargets("default"); err != nil || d.MinCacheHitRatio == nil || *d.MinCacheHitRatio != 0.85 || d.P95MS["*"] != 1000 {
		t.Errorf("default targets: %+v, %v", d, err)
	}
	if _, err := LoadTargets(write(`{"p95_ms": {"weather": 1}}`)); err == nil || !strings.Contains(err.Error(), "weather") {
		t.Errorf("unknown endpoint: %v", err)
	}
	if _, err := LoadTargets(write(`{"p95": 1}`)); err == nil || !strings.Contains(err.Error(), "p95") {
		t.Errorf("unknown field: %v", err)
	}
}

// TestChatsContinueTheNewestSession: chatting users with a session
// continue it (no session is opened); with NewChats each opens one.
func TestChatsContinueTheNewestSession(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		f := newFakeAPI()
		for u := 1; u <= 20; u++ {
			f.sessions[fmt.Sprint(u)] = true
		}
		srv := httptest.NewServer(f)
		rep, err := Run(context.Background(), Config{Target: srv.URL, Connections: 2, Requests: 200, Duration: time.Minute,
			Users: 20, Tokens: fakeTokens, Mix: Mix{EpChat: 1}, NewChats: fresh})
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Errors) != 0 || rep.Endpoints[EpChat].OK != 200 {
			t.Fatalf("NewChats %v: errors %v, chat ok %d", fresh, rep.Errors, rep.Endpoints[EpChat].OK)
		}
		users := rep.Endpoints[EpChatSession].Requests
		switch {
		case !fresh && f.created != 0:
			t.Errorf("sessions opened: %d, want 0 (every user has one to continue)", f.created)
		case fresh && (f.created == 0 || int64(f.created) != users):
			t.Errorf("NewChats: sessions opened %d for %d chatting users", f.created, users)
		}
	}
}
