package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// fakeCachePolicy mimics the default cache policy's rules in Go.
type fakeCachePolicy struct {
	mu     sync.Mutex
	routes []string
	// sameKey makes every user-scoped key identical (a careless policy):
	// the host must still keep users apart.
	sameKey bool
	record  bool // keep the routes seen in routes
	ttl     uint32
	stale   uint32
}

var _ policy.Decider = (*fakeCachePolicy)(nil)

func (p *fakeCachePolicy) Cache(_ context.Context, r *abi.CacheRequest) (abi.CacheDecision, policy.Result) {
	if p.record {
		p.mu.Lock()
		p.routes = append(p.routes, r.Route)
		p.mu.Unlock()
	}
	res := policy.Result{Kind: abi.KindCache, Policy: "fake"}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 60
	}
	key := r.Path
	if r.Query != "" {
		key += "?" + r.Query
	}
	if p.sameKey {
		key = "same"
	}
	if r.Method == "POST" && r.Route == "/api/challenges/:id/complete" {
		return abi.CacheDecision{Action: abi.CacheBypass, Tags: []string{"user:" + r.User}}, res
	}
	if r.Method != "GET" {
		return abi.CacheDecision{}, res
	}
	switch r.Route {
	case "/api/challenges", "/api/big", "/api/missing":
		return abi.CacheDecision{Action: abi.CacheLookup, Key: key, TTLSeconds: ttl, StaleSeconds: p.stale, Scope: abi.ScopeGlobal, Tags: []string{"challenges"}}, res
	case "/api/users/:id/reputation":
		id := strings.Split(r.Path, "/")[3]
		return abi.CacheDecision{Action: abi.CacheLookup, Key: key, TTLSeconds: ttl, StaleSeconds: p.stale, Scope: abi.ScopeUser, Tags: []string{"user:" + id}}, res
	}
	return abi.CacheDecision{}, res
}

func (p *fakeCachePolicy) Route(context.Context, *abi.RouteRequest) (abi.RouteDecision, policy.Result) {
	return policy.FallbackRoute(abi.TierStandard), policy.Result{}
}

func (p *fakeCachePolicy) Compress(_ context.Context, r *abi.CompressRequest) (abi.CompressDecision, policy.Result) {
	return policy.FallbackCompress(r), policy.Result{}
}

// fakeTokens accepts "Bearer u<id>".
type fakeTokens struct{}

func (fakeTokens) Verify(tok string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(tok, "u"), 10, 64)
	if err != nil || !strings.HasPrefix(tok, "u") {
		return 0, fmt.Errorf("bad token")
	}
	return id, nil
}

type cacheFixture struct {
	s        *Server
	c        *cache.Cache
	pol      *fakeCachePolicy
	calls    atomic.Int64
	repCalls atomic.Int64
	version  atomic.Int64
	delay    atomic.Int64 // of the reputation handler
}

// newCacheFixture builds a server with test routes behind requireAuth and
// the cache installed as New does.
func newCacheFixture(t testing.TB, cfg cache.Config, pol *fakeCachePolicy) *cacheFixture {
	t.Helper()
	c, err := cache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f := &cacheFixture{c: c, pol: pol}
	s := New(DefaultConfig(), Deps{Auth: fakeTokens{}, Cache: c, CachePolicy: pol})
	// Behind authentication, every one of these is caller-dependent.
	route := func(method, path string, h fiber.Handler, query ...string) {
		r := apiRoute{Method: method, Path: path, Access: Caller, Query: query, Cache: true}
		if strings.Contains(path, ":id") {
			r.IDs = []string{"id"}
		}
		s.handleRoute(r, h)
	}
	route("GET", "/api/challenges", func(c *fiber.Ctx) error {
		f.calls.Add(1)
		return c.JSON(fiber.Map{"challenges": []string{"say hi"}, "v": f.version.Load()})
	}, "category")
	route("GET", "/api/big", func(c *fiber.Ctx) error {
		f.calls.Add(1)
		return c.SendString(strings.Repeat("x", 4096))
	})
	route("GET", "/api/missing", func(c *fiber.Ctx) error {
		f.calls.Add(1)
		return notFound("nothing here")
	})
	route("GET", "/api/users/:id/reputation", func(c *fiber.Ctx) error {
		f.repCalls.Add(1)
		time.Sleep(time.Duration(f.delay.Load()))
		me, _ := userID(c)
		return c.JSON(fiber.Map{"viewer": me, "subject": c.Params("id"), "v": f.version.Load()})
	})
	route("POST", "/api/challenges/:id/complete", func(c *fiber.Ctx) error {
		f.version.Add(1)
		return c.JSON(fiber.Map{"ok": true})
	})
	route("GET", "/api/other", func(c *fiber.Ctx) error { return c.SendString("other") })
	s.handler = s.app.Handler()
	f.s = s
	return f
}

func (f *cacheFixture) do(t testing.TB, method, path string, user int64) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if user > 0 {
		req.Header.Set("Authorization", "Bearer u"+strconv.FormatInt(user, 10))
	}
	resp, err := f.s.App().Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestCacheMiddlewareHeaders(t *testing.T) {
	f := newCacheFixture(t, cache.Config{MaxEntryBytes: 1024}, &fakeCachePolicy{record: true})
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantXCache []string // for three requests in a row
	}{
		{"catalogue cached", "GET", "/api/challenges", 200, []string{"MISS", "HIT", "HIT"}},
		{"query is part of the key", "GET", "/api/challenges?category=dating", 200, []string{"MISS", "HIT", "HIT"}},
		{"no rule bypasses", "GET", "/api/other", 200, []string{"BYPASS", "BYPASS", "BYPASS"}},
		{"404 not stored", "GET", "/api/missing", 404, []string{"MISS", "MISS", "MISS"}},
		{"oversized not stored", "GET", "/api/big", 200, []string{"MISS", "MISS", "MISS"}},
		{"write bypasses", "POST", "/api/challenges/3/complete", 200, []string{"BYPASS", "BYPASS", "BYPASS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.wantXCache {
				resp, body := f.do(t, tt.method, tt.path, 1)
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("request %d: status %d, body %s", i, resp.StatusCode, body)
				}
				if got := resp.Header.Get("X-Cache"); got != want {
					t.Fatalf("request %d: X-Cache %q, want %q", i, got, want)
				}
				if want != "BYPASS" && resp.Header.Get("Age") == "" {
					t.Fatalf("request %d: no Age header", i)
				}
				if want == "HIT" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
					t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
				}
			}
		})
	}
	// Without a token the handler chain refuses before the cache is asked.
	if resp, _ := f.do(t, "GET", "/api/challenges", 0); resp.StatusCode != 401 {
		t.Fatalf("unauthenticated request served from cache: %d", resp.StatusCode)
	}
	f.pol.mu.Lock()
	defer f.pol.mu.Unlock()
	for _, r := range f.pol.routes {
		if !strings.HasPrefix(r, "/api/") || strings.Contains(r, "/3/") {
			t.Fatalf("policy saw route %q, want a template", r)
		}
	}
}

// TestCacheUserIsolation: two users read each other's user-scoped routes
// through the cache, concurrently, and never see the other's response,
// even when the policy gives every user the same key.
func TestCacheUserIsolation(t *testing.T) {
	for _, same := range []bool{false, true} {
		t.Run(fmt.Sprintf("sameKey=%v", same), func(t *testing.T) {
			f := newCacheFixture(t, cache.Config{}, &fakeCachePolicy{sameKey: same})
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					viewer := int64(1 + w%2)
					for i := range 40 {
						subject := 1 + i%2
						resp, body := f.do(t, "GET", fmt.Sprintf("/api/users/%d/reputation", subject), viewer)
						var got struct {
							Viewer  int64  `json:"viewer"`
							Subject string `json:"subject"`
						}
						if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 {
							t.Errorf("bad response %d %s", resp.StatusCode, body)
							return
						}
						if got.Viewer != viewer {
							t.Errorf("user %d was served user %d's response (%s, X-Cache %s)", viewer, got.Viewer, body, resp.Header.Get("X-Cache"))
							return
						}
						if !same && got.Subject != strconv.Itoa(subject) {
							t.Errorf("asked for %d, got %s", subject, body)
							return
						}
					}
				}()
			}
			wg.Wait()
			if s := f.c.Stats(); s.LocalHits == 0 {
				t.Fatalf("nothing was served from the cache: %+v", s)
			}
		})
	}
}

// TestCacheWritePurges: completing a challenge purges the user's tag.
func TestCacheWritePurges(t *testing.T) {
	f := newCacheFixture(t, cache.Config{}, &fakeCachePolicy{})
	f.do(t, "GET", "/api/users/5/reputation", 5)
	f.do(t, "GET", "/api/users/6/reputation", 6)
	if resp, _ := f.do(t, "GET", "/api/users/5/reputation", 5); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatal("not cached")
	}
	f.do(t, "POST", "/api/challenges/9/complete", 5)
	resp, body := f.do(t, "GET", "/api/users/5/reputation", 5)
	if resp.Header.Get("X-Cache") != "MISS" || !strings.Contains(body, `"v":1`) {
		t.Fatalf("after completion: %s %s", resp.Header.Get("X-Cache"), body)
	}
	if resp, _ := f.do(t, "GET", "/api/users/6/reputation", 6); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatal("another user's entry was purged")
	}
	f.s.PurgeCache(context.Background(), TagChallenges)
	f.do(t, "GET", "/api/challenges", 5)
	if resp, _ := f.do(t, "GET", "/api/challenges", 5); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatal("catalogue not cached after purge")
	}
}

// TestCacheStaleRefresh: a stale entry is served while one background
// sub-request refreshes it.
func TestCacheStaleRefresh(t *testing.T) {
	f := newCacheFixture(t, cache.Config{}, &fakeCachePolicy{ttl: 1, stale: 60})
	f.do(t, "GET", "/api/challenges", 1)
	f.version.Store(7)
	time.Sleep(1100 * time.Millisecond)
	resp, body := f.do(t, "GET", "/api/challenges", 1)
	if resp.Header.Get("X-Cache") != "STALE" || !strings.Contains(body, `"v":0`) {
		t.Fatalf("want the stale copy: %s %s", resp.Header.Get("X-Cache"), body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body = f.do(t, "GET", "/api/challenges", 1)
		if resp.Header.Get("X-Cache") == "HIT" && strings.Contains(body, `"v":7`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refresh did not land: %s %s", resp.Header.Get("X-Cache"), body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("origin calls = %d, want 2 (fill + one refresh)", n)
	}
}

// TestCacheCoalescingHTTP: concurrent misses through a real listener make
// one handler call.
func TestCacheCoalescingHTTP(t *testing.T) {
	f := newCacheFixture(t, cache.Config{}, &fakeCachePolicy{})
	f.delay.Store(int64(200 * time.Millisecond))
	base := serveForTest(t, f.s)
	const n = 200
	var wg sync.WaitGroup
	var bad atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", base+"/api/users/3/reputation", nil)
			req.Header.Set("Authorization", "Bearer u3")
			resp, err := client.Do(req)
			if err != nil {
				bad.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d failed", bad.Load())
	}
	if n := f.repCalls.Load(); n != 1 {
		t.Fatalf("handler calls = %d, want 1", n)
	}
}

func serveForTest(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := listenLocal()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}

func listenLocal() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
