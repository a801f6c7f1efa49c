package drill

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/loadgen"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// full selects the long drills: `go test ./host/drill -drill -v`.
var full = flag.Bool("drill", false, "run the full-length drills (longer, higher rate) instead of the smoke versions")

const (
	jwtSecret  = "drill-secret-0123456789abcdef"
	adminToken = "drill-admin-token-0123456789abcdef"
	// seededUsers are generated in each drill's database; the load draws
	// from 1..loadUsers and the write ledger owns the users above.
	seededUsers = 400
	loadUsers   = 300
)

// shape is the size of one drill run.
type shape struct {
	Duration    time.Duration // measured load
	Rate        float64       // requests per second (constant-rate mode)
	Connections int
	Writers     int // ledger writers, one user each
}

func drillShape() shape {
	if *full {
		return shape{Duration: 40 * time.Second, Rate: 400, Connections: 200, Writers: 16}
	}
	return shape{Duration: 4 * time.Second, Rate: 100, Connections: 16, Writers: 3}
}

// policyDir returns the repository's built policies.
func policyDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(testkit.RepoRoot(t), "policies")
	for _, f := range []string{"bundle.wasm", "cache.wasm", "route.wasm", "compress.wasm", "policies.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("policies/%s is missing: run `go generate ./policies` first (%v)", f, err)
		}
	}
	return dir
}

// database creates, migrates and seeds a database of the drill's own and
// returns its URL; it is dropped at the end of the test.
func database(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dbURL, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_drill")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	st, err := pgstore.Open(ctx, pgstore.Config{URL: dbURL, OpTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Seed(ctx, pgstore.SeedOptions{Users: seededUsers}); err != nil {
		t.Fatal(err)
	}
	return dbURL
}

func freeAddr(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
}

// host is one application running in this process, built by package app
// exactly as `wingate serve` builds it.
type host struct {
	base string // the public listener: the API
	ops  string // the operators' listener: /admin
	app  *app.App
	out  *testkit.SyncBuffer // its warnings and errors
}

// startServe builds the application with the drill's address, secrets
// and the built policies, changed by set, serves it and waits until it is
// ready. It is stopped at the end of the test.
func startServe(t *testing.T, set func(*app.Config)) *host {
	t.Helper()
	cfg := app.Defaults()
	cfg.Addr, cfg.OpsAddr, cfg.JWTSecret, cfg.AdminToken, cfg.PolicyDir, cfg.LogLevel = freeAddr(t), freeAddr(t), jwtSecret, adminToken, policyDir(t), "warn"
	if set != nil {
		set(&cfg)
	}
	out := &testkit.SyncBuffer{}
	log, err := app.NewLogger(out, cfg.LogLevel)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Build(context.Background(), cfg, app.Options{Logger: log})
	if err != nil {
		t.Fatalf("app.Build: %v", err)
	}
	h := &host{base: "http://" + cfg.Addr, ops: "http://" + cfg.OpsAddr, app: a, out: out}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v; log:\n%s", err, out.String())
		}
	})
	if err := a.Start(nil); err != nil {
		t.Fatal(err)
	}
	// Start-up loads the three policies; they are compiled by `go generate
	// ./policies`, but a race-built server that misses the compilation
	// cache compiles each for about 17 s.
	t0 := time.Now()
	h.waitReady(t, 3*time.Minute)
	t.Logf("serve ready after %v", time.Since(t0).Round(time.Millisecond))
	return h
}

// waitReady waits until the application is ready and /readyz answers 200.
func (h *host) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := h.app.WaitReady(ctx); err != nil {
		t.Fatalf("%v; log:\n%s", err, h.out.String())
	}
	for {
		st, _, _, err := do(http.MethodGet, h.base+"/readyz", "", "", nil)
		if err == nil && st == http.StatusOK {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("/readyz still %d (%v) after %v", st, err, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// adminClient uploads policies. An upload validates and compiles the
// module before it answers, and under the race detector wazero's compiler
// is instrumented too: a Go guest that compiles in under 2 s takes about
// 17 s, more on a busy machine.
var adminClient = &http.Client{Timeout: 3 * time.Minute}

// answer is a decoded response.
type answer struct {
	Status int
	Code   string // error code of a JSON error body
	Header http.Header
	Body   map[string]any
}

// do sends one request and returns the status, the error code of a JSON
// error body, the headers and the decoded body. A body that is not JSON is
// an error: every answer of the API is JSON.
func do(method, url, token, body string, hdr map[string]string) (int, string, http.Header, error) {
	a, err := doJSON(method, url, token, body, hdr)
	return a.Status, a.Code, a.Header, err
}

func doJSON(method, url, token, body string, hdr map[string]string) (answer, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return answer{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		return a, fmt.Errorf("%s %s: status %d, body is not a JSON object: %.200q", method, url, resp.StatusCode, raw)
	}
	if e, ok := a.Body["error"].(map[string]any); ok {
		a.Code, _ = e["code"].(string)
	}
	if resp.StatusCode >= 400 && a.Code == "" {
		return a, fmt.Errorf("%s %s: status %d without an error code: %.200q", method, url, resp.StatusCode, raw)
	}
	return a, nil
}

var (
	tokenOnce sync.Once
	tokenAuth *auth.Authority
)

// token returns a bearer token for user, signed with the drill's secret.
func token(user int64) string {
	tokenOnce.Do(func() {
		a, err := auth.New([]byte(jwtSecret))
		if err != nil {
			panic(err)
		}
		tokenAuth = a
	})
	tok, err := tokenAuth.Issue(user, 2*time.Hour)
	if err != nil {
		panic(err)
	}
	return tok
}

// load runs loadgen against h in the background; wait returns its report.
type load struct {
	done chan struct{}
	rep  *loadgen.Report
	err  error
}

func startLoad(h *host, s shape, mix loadgen.Mix) *load {
	l := &load{done: make(chan struct{})}
	cfg := loadgen.Config{Target: h.base, Mode: loadgen.ModeRate, Rate: s.Rate, Connections: s.Connections,
		Duration: s.Duration, Users: loadUsers, Mix: mix, Timeout: 15 * time.Second,
		Tokens: func(u int64) (string, error) { return token(u), nil }}
	go func() {
		defer close(l.done)
		l.rep, l.err = loadgen.Run(context.Background(), cfg)
	}()
	return l
}

func (l *load) wait(t *testing.T) *loadgen.Report {
	t.Helper()
	<-l.done
	if l.err != nil {
		t.Fatalf("load: %v", l.err)
	}
	return l.rep
}

// statusCounts sums a report's errors by kind: 5xx by status, 4xx, and
// failures without an answer.
func count5xx(errs map[string]int64, except ...int) (n int64) {
	for k, v := range errs {
		st, err := strconv.Atoi(k)
		if err != nil || st < 500 {
			continue
		}
		skip := false
		for _, e := range except {
			skip = skip || st == e
		}
		if !skip {
			n += v
		}
	}
	return n
}

// logLoad prints the load's figures.
func logLoad(t *testing.T, rep *loadgen.Report) {
	t.Helper()
	t.Logf("load: %d requests in %.1f s (%.0f req/s, %d connections), P50 %.1f ms, P95 %.1f ms, P99 %.1f ms, max %.0f ms, cache hit ratio %.1f%%, errors %v",
		rep.Requests, rep.Seconds, rep.RPS, rep.Connections, rep.Overall.P50MS, rep.Overall.P95MS, rep.Overall.P99MS,
		rep.Overall.MaxMS, 100*rep.HitRatio, rep.Errors)
	names := make([]string, 0, len(rep.Endpoints))
	for n := range rep.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := rep.Endpoints[n]
		t.Logf("  %-13s %6d requests, %6d ok, P95 %7.1f ms, errors %v", n, e.Requests, e.OK, e.P95MS, e.Errors)
	}
	if rep.Chat.Messages > 0 {
		t.Logf("  chat: %d answers, tiers %v, cost saved %.1f%%, context saved %.1f%%", rep.Chat.Messages,
			rep.Chat.Tiers, rep.Chat.CostSavedPct, rep.Chat.ContextSavedPct)
	}
}

// ledger drives writers that each own one user and record every write the
// server acknowledged, and reads the API's cached endpoints as a probe.
// verify then finds every acknowledged write in the database.
type ledger struct {
	base  string
	users []int64
	chat  bool

	// allow503 is set while no fallback exists (database or every model
	// down): a 503 JSON answer is then allowed, and counted.
	allow503 atomic.Bool

	stop chan struct{}
	wg   sync.WaitGroup

	mu          sync.Mutex
	lastPut     map[int64]int // user → sequence number of the last acknowledged PUT
	maxSent     map[int64]int // user → highest sequence number sent
	completions []completion
	chats       []chatAck
	statuses    map[string]int64 // "kind status" → count
	versions    map[string]int64 // X-Policy-Version values seen by the probe
	outcomes    map[string]int64 // X-Policy-Outcome values seen by the probe
	failures    []string
}

type completion struct {
	user, challenge, id int64
}

type chatAck struct {
	session   string
	user      int64
	userMsg   int64
	replyMsg  int64
	fallbacks int
	replyTier string
}

// startLedger starts n writers on users seededUsers-n+1..seededUsers.
func startLedger(t *testing.T, h *host, n int, chat bool) *ledger {
	t.Helper()
	l := &ledger{base: h.base, chat: chat, stop: make(chan struct{}),
		lastPut: map[int64]int{}, maxSent: map[int64]int{}, statuses: map[string]int64{},
		versions: map[string]int64{}, outcomes: map[string]int64{}}
	for i := range n {
		l.users = append(l.users, int64(seededUsers-i))
	}
	for _, u := range l.users {
		session := ""
		if chat {
			a, err := doJSON(http.MethodPost, h.base+"/api/chat/sessions", token(u), `{"title": "drill"}`, nil)
			if err != nil || a.Status != http.StatusCreated {
				t.Fatalf("create chat session for user %d = %d %v (%v)", u, a.Status, a.Body, err)
			}
			session, _ = a.Body["id"].(string)
		}
		l.wg.Add(1)
		go l.write(u, session)
	}
	return l
}

func (l *ledger) note(kind string, st int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := kind + " " + strconv.Itoa(st)
	if err != nil && st == 0 {
		key = kind + " transport"
	}
	l.statuses[key]++
	if err != nil {
		if len(l.failures) < 20 {
			l.failures = append(l.failures, err.Error())
		}
		return
	}
	// A 5xx is a failure, except a 503 while no fallback exists.
	if st >= 500 && !(st == http.StatusServiceUnavailable && l.allow503.Load()) && len(l.failures) < 20 {
		l.failures = append(l.failures, fmt.Sprintf("%s answered %d", kind, st))
	}
}

func (l *ledger) write(user int64, session string) {
	defer l.wg.Done()
	tok := token(user)
	base := l.base
	userPath := base + "/api/users/" + strconv.FormatInt(user, 10)
	for seq := 1; ; seq++ {
		select {
		case <-l.stop:
			return
		default:
		}
		// A location whose latitude encodes the sequence number.
		l.mu.Lock()
		l.maxSent[user] = seq
		l.mu.Unlock()
		body := fmt.Sprintf(`{"lat": %.3f, "lon": %d}`, float64(seq)/1000, user%180)
		st, _, _, err := do(http.MethodPut, userPath+"/location", tok, body, nil)
		l.note("location_put", st, err)
		if err == nil && st == http.StatusOK {
			l.mu.Lock()
			if seq > l.lastPut[user] {
				l.lastPut[user] = seq
			}
			l.mu.Unlock()
		}
		if seq%4 == 0 {
			ch := int64((seq/4)%200) + 1
			a, err := doJSON(http.MethodPost, fmt.Sprintf("%s/api/challenges/%d/complete", base, ch), tok, "", nil)
			l.note("complete", a.Status, err)
			if err == nil && (a.Status == http.StatusCreated || a.Status == http.StatusOK) {
				id, _ := a.Body["id"].(float64)
				l.mu.Lock()
				l.completions = append(l.completions, completion{user, ch, int64(id)})
				l.mu.Unlock()
			}
		}
		if l.chat && session != "" && seq%3 == 0 {
			texts := []string{"hey, thanks!", "How do I keep a conversation going after the first hello at a party?",
				"Please assess my progress this month: five challenges done, two skipped, still nervous before each."}
			purpose := "chat"
			if seq%9 == 0 {
				purpose = "assessment"
			}
			msg, _ := json.Marshal(map[string]string{"text": texts[(seq/3)%len(texts)], "purpose": purpose})
			a, err := doJSON(http.MethodPost, base+"/api/chat/sessions/"+session+"/messages", tok, string(msg), nil)
			l.note("chat", a.Status, err)
			if err == nil && a.Status/100 == 2 {
				ack := chatAck{session: session, user: user}
				if m, ok := a.Body["message"].(map[string]any); ok {
					id, _ := m["id"].(float64)
					ack.userMsg = int64(id)
				}
				if m, ok := a.Body["reply"].(map[string]any); ok {
					id, _ := m["id"].(float64)
					ack.replyMsg = int64(id)
					ack.replyTier, _ = m["tier"].(string)
				}
				if f, ok := a.Body["fallbacks"].([]any); ok {
					ack.fallbacks = len(f)
				}
				l.mu.Lock()
				l.chats = append(l.chats, ack)
				l.mu.Unlock()
			}
		}
		// The probe: cached reads, with the policy attribution headers.
		for _, p := range []struct{ kind, url, tok string }{
			{"reputation", userPath + "/reputation", tok},
			{"challenges", base + "/api/challenges?limit=5", ""},
		} {
			st, _, hdr, err := do(http.MethodGet, p.url, p.tok, "", nil)
			l.note(p.kind, st, err)
			if hdr != nil {
				l.mu.Lock()
				if v := hdr.Get("X-Policy-Version"); v != "" {
					l.versions[v]++
				}
				if v := hdr.Get("X-Policy-Outcome"); v != "" {
					l.outcomes[v]++
				}
				l.mu.Unlock()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the writers.
func (l *ledger) finish() {
	close(l.stop)
	l.wg.Wait()
}

// verify opens the database directly and finds every acknowledged write.
func (l *ledger) verify(t *testing.T, dbURL string) {
	t.Helper()
	ctx := context.Background()
	st, err := pgstore.Open(ctx, pgstore.Config{URL: dbURL, OpTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	puts, lost := 0, 0
	for _, u := range l.users {
		acked := l.lastPut[u]
		if acked == 0 {
			continue
		}
		puts++
		loc, err := st.GetLocation(ctx, u)
		got := 0
		if err == nil {
			got = int(math.Round(loc.Lat * 1000))
		}
		// A later write may have landed without its answer arriving; an
		// earlier one may not win over an acknowledged one.
		if err != nil || got < acked || got > l.maxSent[u] {
			lost++
			t.Errorf("user %d: location #%d acknowledged, database holds #%d (err %v)", u, acked, got, err)
		}
	}
	now := time.Now()
	for _, c := range l.completions {
		got, err := st.CompleteChallenge(ctx, c.user, c.challenge, now)
		if err != nil || got.Created || got.ID != c.id {
			lost++
			t.Errorf("completion %d (user %d, challenge %d) acknowledged; database: created again %v, id %d, err %v",
				c.id, c.user, c.challenge, got.Created, got.ID, err)
		}
	}
	sessions := map[string]map[int64]bool{}
	for _, c := range l.chats {
		if sessions[c.session] == nil {
			ids := map[int64]bool{}
			for after := int64(0); ; {
				msgs, err := st.ListChatMessages(ctx, c.session, after, 1000)
				if err != nil {
					t.Fatalf("list chat messages of %s: %v", c.session, err)
				}
				for _, m := range msgs {
					ids[m.ID] = true
					after = m.ID
				}
				if len(msgs) < 1000 {
					break
				}
			}
			sessions[c.session] = ids
		}
		if !sessions[c.session][c.userMsg] || !sessions[c.session][c.replyMsg] {
			lost++
			t.Errorf("chat turn (message %d, reply %d) of session %s acknowledged but not stored", c.userMsg, c.replyMsg, c.session)
		}
	}
	t.Logf("acknowledged writes: %d users' last location PUT, %d completions, %d chat turns; %d lost",
		puts, len(l.completions), len(l.chats), lost)
	if puts == 0 || len(l.completions) == 0 || (l.chat && len(l.chats) == 0) {
		t.Errorf("too few acknowledged writes to check: %d puts, %d completions, %d chat turns", puts, len(l.completions), len(l.chats))
	}
}

// checkAnswers reports the probe's answers and fails on any failure noted.
func (l *ledger) checkAnswers(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.statuses))
	for k := range l.statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s×%d", k, l.statuses[k])
	}
	t.Logf("ledger answers:%s", b.String())
	for _, f := range l.failures {
		t.Errorf("ledger: %s", f)
	}
}

func (l *ledger) count(kind string, status int) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.statuses[kind+" "+strconv.Itoa(status)]
}

// sleepPhase waits d and logs the phase.
func sleepPhase(t *testing.T, name string, d time.Duration) {
	t.Helper()
	t.Logf("phase %q for %v", name, d)
	time.Sleep(d)
}
