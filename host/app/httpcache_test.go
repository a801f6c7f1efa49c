package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/internal/testkit"
)

// listening builds the served assembly with cfg changed by mutate and
// starts it on a free loopback port; it returns the app and its base URL.
func listening(tb testing.TB, log *slog.Logger, mutate func(*Config)) (*App, string) {
	tb.Helper()
	cfg := Defaults()
	cfg.PolicyDir, cfg.JWTSecret, cfg.AdminToken = policyDir(tb), testSecret, testAdminToken
	if mutate != nil {
		mutate(&cfg)
	}
	opt := quiet()
	if log != nil {
		opt.Logger = log
	}
	a, err := Build(context.Background(), cfg, opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Stop(context.Background()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Start(ln); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	return a, "http://" + a.Addr()
}

// opsBase is the URL of a's operators' listener (/admin, /metrics,
// /dashboard).
func opsBase(a *App) string { return "http://" + a.OpsAddr() }

// answer is one HTTP exchange's outcome.
type answer struct {
	status int
	h      http.Header
	body   string
}

// call sends method url with the headers given as name, value pairs.
func call(tb testing.TB, method, url, body string, hdr ...string) answer {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req) // no client cache, no redirects
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

func bearer(tb testing.TB, user int64) string {
	tb.Helper()
	a, err := auth.New([]byte(testSecret))
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := a.Issue(user, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return "Bearer " + tok
}

// TestHTTPCacheHeaders: the answers of the cache say what it decided, in
// the headers proxies and browsers read: the public catalogue is public
// with the decision's TTL and a strong ETag, the same on a hit; a caller's
// reputation is private and varies on Authorization; a write and an error
// are no-store; a second GET naming the ETag is a 304 without a body.
func TestHTTPCacheHeaders(t *testing.T) {
	a, base := listening(t, nil, nil)
	miss := call(t, "GET", base+"/api/challenges?limit=3", "")
	hit := call(t, "GET", base+"/api/challenges?limit=3", "")
	if miss.status != 200 || hit.status != 200 || miss.h.Get("X-Cache") != "MISS" || hit.h.Get("X-Cache") != "HIT" {
		t.Fatalf("catalogue: %d %s then %d %s, want 200 MISS then 200 HIT", miss.status, miss.h.Get("X-Cache"), hit.status, hit.h.Get("X-Cache"))
	}
	etag := miss.h.Get("ETag")
	if len(etag) != 34 || etag[0] != '"' || strings.HasPrefix(etag, "W/") || hit.h.Get("ETag") != etag {
		t.Fatalf("catalogue ETag %q then %q, want one strong tag", etag, hit.h.Get("ETag"))
	}
	for _, a := range []answer{miss, hit} {
		if cc := a.h.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") || cc == "public, max-age=0" {
			t.Fatalf("catalogue Cache-Control %q, want public with the decision's TTL", cc)
		}
		if v := a.h.Values("Vary"); len(v) != 0 {
			t.Fatalf("catalogue Vary %q, want none (the same for everyone)", v)
		}
		if a.h.Get("Age") == "" {
			t.Fatal("no Age header")
		}
	}
	// 304 from the in-process tier, and the weak and list forms.
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		nm := call(t, "GET", base+"/api/challenges?limit=3", "", "If-None-Match", inm)
		if nm.status != 304 || nm.body != "" || nm.h.Get("ETag") != etag || nm.h.Get("X-Cache") != "HIT" ||
			nm.h.Get("Cache-Control") != hit.h.Get("Cache-Control") {
			t.Fatalf("If-None-Match %s: %d %q ETag %q X-Cache %q CC %q, want 304 HIT without a body", inm,
				nm.status, nm.body, nm.h.Get("ETag"), nm.h.Get("X-Cache"), nm.h.Get("Cache-Control"))
		}
	}
	if other := call(t, "GET", base+"/api/challenges?limit=3", "", "If-None-Match", `"other"`); other.status != 200 || other.body != miss.body {
		t.Fatalf("a stale If-None-Match: %d, want 200 with the body", other.status)
	}
	// A miss whose fresh answer matches is a 304 too (another limit
	// spelling of the same bytes is not needed: a purge makes the miss).
	if p := call(t, "POST", opsBase(a)+"/admin/cache/purge", `{"keys": ["/api/challenges?limit=3"]}`, "Authorization", "Bearer "+testAdminToken); p.status != 200 {
		t.Fatalf("purge: %d %s", p.status, p.body)
	}
	nm := call(t, "GET", base+"/api/challenges?limit=3", "", "If-None-Match", etag)
	if nm.status != 304 || nm.body != "" || nm.h.Get("X-Cache") != "MISS" {
		t.Fatalf("miss with a matching If-None-Match: %d %s %q, want 304 MISS without a body", nm.status, nm.h.Get("X-Cache"), nm.body)
	}

	tok := bearer(t, 7)
	rep := call(t, "GET", base+"/api/users/7/reputation", "", "Authorization", tok)
	if rep.status != 200 || !strings.HasPrefix(rep.h.Get("Cache-Control"), "private, max-age=") || rep.h.Get("Vary") != "Authorization" || rep.h.Get("ETag") == "" {
		t.Fatalf("reputation: %d Cache-Control %q Vary %q ETag %q, want private, Vary Authorization, an ETag",
			rep.status, rep.h.Get("Cache-Control"), rep.h.Get("Vary"), rep.h.Get("ETag"))
	}
	if nm := call(t, "GET", base+"/api/users/7/reputation", "", "Authorization", tok, "If-None-Match", rep.h.Get("ETag")); nm.status != 304 || nm.body != "" {
		t.Fatalf("reputation If-None-Match: %d %q, want 304 without a body", nm.status, nm.body)
	}
	// Another caller naming that ETag gets their own answer from their own entry.
	if o := call(t, "GET", base+"/api/users/7/reputation", "", "Authorization", bearer(t, 8)); o.h.Get("X-Cache") != "MISS" {
		t.Fatalf("user 8 got X-Cache %q on user 7's entry, want MISS", o.h.Get("X-Cache"))
	}
	// Writes, uncached per-user reads and errors are no-store.
	for _, tc := range []struct {
		method, path, body string
		hdr                []string
		status             int
	}{
		{"PUT", "/api/users/7/location", `{"lat": 1, "lon": 2}`, []string{"Authorization", tok, "Content-Type", "application/json"}, 200},
		{"GET", "/api/users/7/reputation", "", nil, 401},
		{"GET", "/api/users/x/reputation", "", []string{"Authorization", tok}, 400},
		{"GET", "/api/nope", "", nil, 404},
	} {
		a := call(t, tc.method, base+tc.path, tc.body, tc.hdr...)
		if a.status != tc.status || a.h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: %d Cache-Control %q, want %d no-store (%s)", tc.method, tc.path, a.status, a.h.Get("Cache-Control"), tc.status, a.body)
		}
	}
}

// startShared builds two assemblies sharing a Redis of the test's own.
func startShared(t *testing.T) (a, b *App, baseA, baseB string, rdb *redis.Client) {
	cache.SilenceRedisLogs()
	rs := testkit.StartRedis(t)
	a, baseA = listening(t, nil, func(c *Config) { c.RedisURL = rs.URL() })
	b, baseB = listening(t, nil, func(c *Config) { c.RedisURL = rs.URL() })
	rdb = redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return a, b, baseA, baseB, rdb
}

// waitStored waits until Redis holds n entries (the writes are queued).
func waitStored(t *testing.T, rdb *redis.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys, err := rdb.Keys(context.Background(), "wingate:cache:"+cache.FormatVersion+":k:*").Result()
		if err == nil && len(keys) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis holds %d entries after 10 s, want %d (%v)", len(keys), n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNotModifiedFromRedisTier: instance B, which has nothing in its
// in-process tier, answers a GET naming instance A's ETag with a 304 and
// no body from the Redis tier, without calling its handler.
func TestNotModifiedFromRedisTier(t *testing.T) {
	_, b, baseA, baseB, rdb := startShared(t)
	first := call(t, "GET", baseA+"/api/challenges?limit=2", "")
	if first.status != 200 || first.h.Get("ETag") == "" {
		t.Fatalf("A: %d ETag %q", first.status, first.h.Get("ETag"))
	}
	waitStored(t, rdb, 1)
	before := b.deps.Cache.Stats()
	nm := call(t, "GET", baseB+"/api/challenges?limit=2", "", "If-None-Match", first.h.Get("ETag"))
	after := b.deps.Cache.Stats()
	if nm.status != 304 || nm.body != "" || nm.h.Get("ETag") != first.h.Get("ETag") || nm.h.Get("X-Cache") != "HIT" {
		t.Fatalf("B: %d %q ETag %q X-Cache %q, want 304 HIT with A's ETag and no body", nm.status, nm.body, nm.h.Get("ETag"), nm.h.Get("X-Cache"))
	}
	if after.RedisHits != before.RedisHits+1 || after.Fills != before.Fills || after.LocalHits != before.LocalHits {
		t.Fatalf("B's cache before %+v after %+v: want one Redis hit, no fill, no local hit", before, after)
	}
	if !strings.HasPrefix(nm.h.Get("Cache-Control"), "public, max-age=") {
		t.Fatalf("B's 304 Cache-Control %q", nm.h.Get("Cache-Control"))
	}
}

// TestPurgeReachesEveryInstance: a purge by tag, by key (in another
// spelling) and by the PURGE method, sent to instance A, drops the entry
// that instance B holds in its in-process tier; the answers say Redis
// took it and both instances heard it.
func TestPurgeReachesEveryInstance(t *testing.T) {
	a, b, baseA, baseB, rdb := startShared(t)
	opsA := opsBase(a)
	admin := []string{"Authorization", "Bearer " + testAdminToken, "Content-Type", "application/json"}
	tok := bearer(t, 7)
	for _, tc := range []struct {
		name, path string
		hdr        []string
		purge      func() answer
	}{
		{"tag", "/api/challenges?limit=4", nil, func() answer {
			return call(t, "POST", opsA+"/admin/cache/purge", `{"tags": ["challenges"]}`, admin...)
		}},
		{"key", "/api/users/7/reputation", []string{"Authorization", tok}, func() answer {
			return call(t, "POST", opsA+"/admin/cache/purge", `{"keys": ["/API/users/0007/reputation/?ignored=1"]}`, admin...)
		}},
		{"PURGE", "/api/challenges?limit=5", nil, func() answer {
			return call(t, "PURGE", baseA+"/api/challenges?difficulty=&limit=5&x=y", "", admin...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb.FlushDB(context.Background())
			call(t, "GET", baseB+tc.path, "", tc.hdr...)
			if h := call(t, "GET", baseB+tc.path, "", tc.hdr...); h.h.Get("X-Cache") != "HIT" {
				t.Fatalf("B: X-Cache %q before the purge, want HIT", h.h.Get("X-Cache"))
			}
			waitStored(t, rdb, 1)
			p := tc.purge()
			var ans struct {
				Redis        bool  `json:"redis"`
				RedisEntries int64 `json:"redis_entries"`
				Instances    int64 `json:"instances"`
			}
			if p.status != 200 || json.Unmarshal([]byte(p.body), &ans) != nil || !ans.Redis || ans.RedisEntries != 1 || ans.Instances != 2 {
				t.Fatalf("purge on A: %d %s, want 200 with redis true, 1 entry, 2 instances", p.status, p.body)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				h := call(t, "GET", baseB+tc.path, "", tc.hdr...)
				if h.h.Get("X-Cache") == "MISS" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("B still answers %q 5 s after the purge on A", h.h.Get("X-Cache"))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if st := b.deps.Cache.Stats(); st.PurgesReceived == 0 {
				t.Fatalf("B received no purge: %+v", st)
			}
		})
	}
}

// TestPurgeRefusals: the purge API refuses, in the project's JSON shape
// and without purging anything, every request it cannot take whole; the
// PURGE method and unknown methods answer JSON too.
func TestPurgeRefusals(t *testing.T) {
	a, base := listening(t, nil, nil)
	admin := []string{"Authorization", "Bearer " + testAdminToken, "Content-Type", "application/json"}
	call(t, "GET", base+"/api/challenges?limit=6", "")
	many := make([]string, 101)
	for i := range many {
		many[i] = "t"
	}
	manyJSON, _ := json.Marshal(map[string][]string{"tags": many})
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
	}{
		{"no token", "POST", "/admin/cache/purge", `{"tags": ["challenges"]}`, nil, 401, "unauthorized"},
		{"wrong token", "POST", "/admin/cache/purge", `{"tags": ["challenges"]}`, []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
		{"empty", "POST", "/admin/cache/purge", `{}`, admin, 400, "invalid_tags"},
		{"not JSON", "POST", "/admin/cache/purge", `tags=challenges`, admin, 400, "invalid_body"},
		{"unknown field", "POST", "/admin/cache/purge", `{"tag": ["challenges"]}`, admin, 400, "invalid_body"},
		{"trailing data", "POST", "/admin/cache/purge", `{"tags": ["challenges"]} {}`, admin, 400, "invalid_body"},
		{"101 items", "POST", "/admin/cache/purge", string(manyJSON), admin, 400, "over_limit"},
		{"huge body", "POST", "/admin/cache/purge", `{"tags": ["` + strings.Repeat("a", 70<<10) + `"]}`, admin, 413, "body_too_large"},
		{"tag with a newline", "POST", "/admin/cache/purge", `{"tags": ["challenges", "a\nb"]}`, admin, 400, "invalid_tags"},
		{"513-byte tag", "POST", "/admin/cache/purge", `{"tags": ["` + strings.Repeat("a", 513) + `"]}`, admin, 400, "invalid_tags"},
		{"empty tag", "POST", "/admin/cache/purge", `{"tags": [""]}`, admin, 400, "invalid_tags"},
		{"valid tag, bad id key", "POST", "/admin/cache/purge", `{"tags": ["challenges"], "keys": ["/api/users/0x7/reputation"]}`, admin, 400, "invalid_keys"},
		{"key not a route", "POST", "/admin/cache/purge", `{"tags": ["challenges"], "keys": ["/api/nope"]}`, admin, 400, "invalid_keys"},
		{"key of a write", "POST", "/admin/cache/purge", `{"tags": ["challenges"], "keys": ["/api/chat/sessions/abc/messages/x"]}`, admin, 400, "invalid_keys"},
		{"key not a path", "POST", "/admin/cache/purge", `{"tags": ["challenges"], "keys": ["http://evil/api/challenges"]}`, admin, 400, "invalid_keys"},
		{"key with a fragment", "POST", "/admin/cache/purge", `{"tags": ["challenges"], "keys": ["/api/challenges#x"]}`, admin, 400, "invalid_keys"},
		{"PURGE without token", "PURGE", "/api/challenges", "", nil, 401, "unauthorized"},
		{"PURGE of an uncached path", "PURGE", "/api/nope", "", admin, 404, "not_found"},
		{"PURGE with a bad id", "PURGE", "/api/users/-1/reputation", "", admin, 400, "invalid_id"},
		{"unknown method", "BREW", "/api/challenges", "", nil, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := base
			if strings.HasPrefix(tc.path, "/admin/") {
				target = opsBase(a)
			}
			var ans answer
			if tc.status == http.StatusRequestEntityTooLarge {
				// Answered from its header before the body is read: sent
				// with its Content-Length and without its body (sendRaw),
				// as a client still writing may see a reset instead.
				req, _ := http.NewRequest(tc.method, target+tc.path, strings.NewReader(tc.body))
				for i := 0; i+1 < len(tc.hdr); i += 2 {
					req.Header.Set(tc.hdr[i], tc.hdr[i+1])
				}
				res, err := sendRaw(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				ans = answer{res.StatusCode, res.Header, string(b)}
			} else {
				ans = call(t, tc.method, target+tc.path, tc.body, tc.hdr...)
			}
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if ans.status != tc.status || json.Unmarshal([]byte(ans.body), &e) != nil || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Fatalf("%d %q, want %d with code %s in the JSON shape", ans.status, ans.body, tc.status, tc.code)
			}
			if !strings.HasPrefix(ans.h.Get("Content-Type"), "application/json") || ans.h.Get("Cache-Control") != "no-store" {
				t.Fatalf("Content-Type %q Cache-Control %q", ans.h.Get("Content-Type"), ans.h.Get("Cache-Control"))
			}
		})
	}
	if st := a.deps.Cache.Stats(); st.Purges != 0 {
		t.Fatalf("%d purges after refused requests only, want 0", st.Purges)
	}
	if h := call(t, "GET", base+"/api/challenges?limit=6", ""); h.h.Get("X-Cache") != "HIT" {
		t.Fatalf("the entry is gone after refused purges: X-Cache %q", h.h.Get("X-Cache"))
	}
	// Without an admin token the purge API is disabled, in JSON.
	_, off := listening(t, nil, func(c *Config) { c.AdminToken = "" })
	if ans := call(t, "PURGE", off+"/api/challenges", ""); ans.status != 403 || !strings.Contains(ans.body, `"admin_disabled"`) {
		t.Fatalf("PURGE without an admin token configured: %d %s, want 403 admin_disabled", ans.status, ans.body)
	}
}

// TestLandingPage: / on the operators' listener says what is running (the
// active policy versions) and links to the dashboard and the metrics; on
// the public listener it shows neither and says where they are; neither
// loads an external asset; the start-up log line names the dashboard's
// URL on the operators' listener.
func TestLandingPage(t *testing.T) {
	var logs bytes.Buffer
	a, base := listening(t, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	page := func(url string) string {
		ans := call(t, "GET", url+"/", "")
		if ans.status != 200 || !strings.HasPrefix(ans.h.Get("Content-Type"), "text/html") {
			t.Fatalf("%s/: %d %s", url, ans.status, ans.h.Get("Content-Type"))
		}
		for _, bad := range []string{"http://", "https://", "<script", "src="} {
			if strings.Contains(ans.body, bad) {
				t.Errorf("%s/ contains %q: no external asset or script wanted", url, bad)
			}
		}
		return ans.body
	}
	ops, public := page(opsBase(a)), page(base)
	for _, want := range []string{`href="/dashboard"`, `href="/metrics"`, "Version", "docs/cache.md"} {
		if !strings.Contains(ops, want) {
			t.Errorf("/ on the operators' listener does not contain %q", want)
		}
	}
	for _, act := range a.deps.Rollout.Status().Active {
		if !strings.Contains(ops, act.Version) || !strings.Contains(ops, act.Policy) {
			t.Errorf("/ does not show the active %s version %s@%s", act.Kind, act.Policy, act.Version)
		}
		if strings.Contains(public, act.Version) {
			t.Errorf("/ on the public listener shows the active %s version %s", act.Kind, act.Version)
		}
	}
	for _, bad := range []string{`href="/dashboard"`, `href="/metrics"`, `href="/admin`} {
		if strings.Contains(public, bad) {
			t.Errorf("/ on the public listener links an operators' path: %q", bad)
		}
	}
	if !strings.Contains(public, "operators' listener") {
		t.Errorf("/ on the public listener does not say where the dashboard is")
	}
	if want := "dashboard=" + opsBase(a) + "/dashboard"; !strings.Contains(logs.String(), want) {
		t.Errorf("the start-up log does not contain %q:\n%s", want, logs.String())
	}
}

// TestFreshServerHasNoAlert: a freshly started server, on the in-memory
// store and on PostgreSQL, has no alert pending or firing at its first
// evaluations, up to past the pool's 5 s statistics window. (On
// PostgreSQL the pool's start-up connection dials used to count as
// acquire waits in its first window and put DatabasePoolSaturated
// pending.)
func TestFreshServerHasNoAlert(t *testing.T) {
	pg := os.Getenv("WINGATE_TEST_PG")
	if pg == "" {
		pg = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	for _, tc := range []struct{ name, db string }{{"memory", ""}, {"postgres", pg}} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := listening(t, nil, func(c *Config) { c.DatabaseURL = tc.db })
			for i := range 4 {
				a.deps.Alerts.Eval(context.Background())
				for _, al := range a.deps.Alerts.List().Active {
					if al.State == alert.StatePending || al.State == alert.StateFiring {
						t.Fatalf("fresh server, evaluation %d: alert %s is %s (%s)", i, al.Rule, al.State, al.Summary)
					}
				}
				time.Sleep(2 * time.Second)
			}
		})
	}
}
