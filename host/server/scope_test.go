package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/simulated"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/memstore"
	"github.com/wingman-app/wingate/sdk/abi"
)

// scopeWorld is the real Wingman and chat API over a memory store with
// two users whose data is recognisable: user 1 (the owner of every
// subject the scope tests ask about) and user 2.
type scopeWorld struct {
	st       *memstore.Store
	chat     *chat.Service
	sessions map[int64]string // each user's chat session
	// secrets are strings only user 1's, resp. user 2's data contains.
	secrets map[int64][]string
}

func newScopeWorld(t testing.TB) *scopeWorld {
	t.Helper()
	ctx := context.Background()
	w := &scopeWorld{st: memstore.New(), sessions: map[int64]string{}, secrets: map[int64][]string{}}
	locs := map[int64][2]float64{1: {11.123456, 22.654321}, 2: {33.987654, 44.456789}}
	for id := int64(1); id <= 3; id++ {
		if _, err := w.st.CreateUser(ctx, store.User{ID: id, Name: fmt.Sprint("user", id)}); err != nil {
			t.Fatal(err)
		}
	}
	for id, ll := range locs {
		if _, err := w.st.PutLocation(ctx, store.Location{UserID: id, Lat: ll[0], Lon: ll[1]}); err != nil {
			t.Fatal(err)
		}
		sess, err := w.st.CreateChatSession(ctx, id, fmt.Sprintf("title-of-user-%d", id))
		if err != nil {
			t.Fatal(err)
		}
		w.sessions[id] = sess.ID
		if err := w.st.AppendChatMessage(ctx, &store.ChatMessage{SessionID: sess.ID, Role: "user", Text: fmt.Sprintf("words-of-user-%d", id)}); err != nil {
			t.Fatal(err)
		}
		w.secrets[id] = []string{fmt.Sprint(ll[0]), fmt.Sprintf("title-of-user-%d", id), fmt.Sprintf("words-of-user-%d", id), sess.ID}
	}
	p := simulated.New(simulated.Options{})
	var err error
	w.chat, err = chat.New(chat.Config{Store: w.st, Decider: lengthRouter{}, Tiers: llm.DefaultTiers(p.Name()),
		Providers: map[string]llm.Provider{p.Name(): p}})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// server serves the world, through c and dec when c is not nil.
func (w *scopeWorld) server(c *cache.Cache, dec policy.Decider) *Server {
	d := Deps{Store: w.st, Chat: w.chat, Auth: fakeTokens{}}
	if c != nil {
		d.Cache, d.CachePolicy = c, dec
	}
	return New(DefaultConfig(), d)
}

// scopeCaller is one kind of caller of the matrix.
type scopeCaller struct {
	name string
	auth string // Authorization header; empty: none
	user int64  // the authenticated user, 0 for none
}

var scopeCallers = []scopeCaller{
	{"owner", "Bearer u1", 1},
	{"other", "Bearer u2", 2},
	{"anonymous", "", 0},
	{"forged", "Bearer forged", 0},
}

// scopePaths are the requests of the matrix: every user-scoped route
// about user 1 (whose owner is caller "owner"), the same about user 2,
// and the public catalogue.
func (w *scopeWorld) scopePaths() []string {
	var ps []string
	for _, u := range []int64{1, 2} {
		ps = append(ps,
			fmt.Sprintf("/api/users/%d/reputation", u),
			fmt.Sprintf("/api/users/%d/matches", u),
			fmt.Sprintf("/api/users/%d/location", u),
			fmt.Sprintf("/api/chat/sessions/%s/messages", w.sessions[u]),
			fmt.Sprintf("/api/chat/sessions/%s/cost", w.sessions[u]),
		)
	}
	return append(ps, "/api/chat/sessions", "/api/challenges")
}

type scopeAnswer struct {
	status int
	body   string
	xcache string
}

func serveDirect(h fasthttp.RequestHandler, path, authz string) scopeAnswer {
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("GET")
	rc.Request.SetRequestURI(path)
	if authz != "" {
		rc.Request.Header.Set("Authorization", authz)
	}
	h(&rc)
	return scopeAnswer{rc.Response.StatusCode(), string(rc.Response.Body()), string(rc.Response.Header.Peek("X-Cache"))}
}

// reference answers every path for every caller from a server without a
// cache, twice, and fails unless both runs agree.
func (w *scopeWorld) reference(t testing.TB) map[string]scopeAnswer {
	t.Helper()
	ref := map[string]scopeAnswer{}
	s := w.server(nil, nil)
	for run := range 2 {
		for _, p := range w.scopePaths() {
			for _, c := range scopeCallers {
				a := serveDirect(s.handler, p, c.auth)
				a.xcache = ""
				k := c.name + " " + p
				if run == 1 && ref[k] != a {
					t.Fatalf("reference not deterministic for %s: %+v then %+v", k, ref[k], a)
				}
				ref[k] = a
			}
		}
	}
	return ref
}

// hostileKey names one kind of key a hostile policy returns.
type hostileKey struct {
	name string
	key  func(r *abi.CacheRequest) string
}

// oversizedKey is the matrix's oversized policy key (1 MiB, to keep the
// matrix fast; TestCacheHugePolicyKey sends 15 MiB).
var oversizedKey = strings.Repeat("k", 1<<20)

var hostileKeys = []hostileKey{
	{"global", func(*abi.CacheRequest) string { return "everyone" }},
	{"other-user", func(r *abi.CacheRequest) string {
		u := "1"
		if r.User == "1" {
			u = "2"
		}
		return "/api/users/" + u + "/location" // what the default policy gives user u
	}},
	{"empty", func(*abi.CacheRequest) string { return "" }},
	{"public-route", func(*abi.CacheRequest) string { return "/api/challenges" }},
	{"oversized", func(*abi.CacheRequest) string { return oversizedKey }},
}

var (
	hostileActions = []abi.CacheAction{abi.CacheBypass, abi.CacheLookup, abi.CacheAction(9)}
	hostileScopes  = []abi.Scope{abi.ScopeGlobal, abi.ScopeUser, abi.Scope(7)}
)

// hostileDecider returns the same decision, but for the key, to every
// request.
type hostileDecider struct {
	nativeDecider
	action abi.CacheAction
	scope  abi.Scope
	key    hostileKey
}

func (h hostileDecider) Cache(_ context.Context, r *abi.CacheRequest) (abi.CacheDecision, policy.Result) {
	return abi.CacheDecision{Action: h.action, Scope: h.scope, Key: h.key.key(r), TTLSeconds: 600, StaleSeconds: 600,
		Tags: []string{"challenges"}}, policy.Result{Kind: abi.KindCache, Policy: "hostile"}
}

// scopeTier builds the servers of one tier for one decider: one instance
// for the in-process tier; two sharing a Redis prefix for the Redis tier,
// so that one instance's fills are served to the other from Redis.
type scopeTier struct {
	name  string
	redis *testkit.Redis
}

func (tier scopeTier) servers(t testing.TB, w *scopeWorld, dec policy.Decider, prefix string) ([]*Server, []*cache.Cache) {
	t.Helper()
	n := 1
	if tier.redis != nil {
		n = 2
	}
	var ss []*Server
	var cs []*cache.Cache
	for range n {
		cfg := cache.Config{Prefix: prefix}
		if tier.redis != nil {
			cfg.Redis = redis.NewClient(&redis.Options{Addr: tier.redis.Addr()})
		}
		c, err := cache.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		ss = append(ss, w.server(c, dec))
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return ss, cs
}

// scopeStats counts what a matrix run did.
type scopeStats struct {
	mu                     sync.Mutex
	decisions, requests    int
	hits, redisHits, local uint64
	refusals               int // 401/403 answers checked
}

// runScopeMatrix sends every path as every caller, twice in opposite
// caller orders, to servers deciding with dec, and checks every answer
// against the reference: same status and body (so no body meant for
// someone else), refusals never from the cache, and no other user's
// secret in any body.
func runScopeMatrix(t *testing.T, w *scopeWorld, ref map[string]scopeAnswer, ss []*Server, st *scopeStats, label string) {
	t.Helper()
	paths := w.scopePaths()
	i := 0
	for round := range 3 {
		order := scopeCallers
		if round == 1 {
			order = []scopeCaller{scopeCallers[3], scopeCallers[2], scopeCallers[1], scopeCallers[0]}
		}
		for _, p := range paths {
			for _, c := range order {
				s := ss[i%len(ss)]
				i++
				got := serveDirect(s.handler, p, c.auth)
				want := ref[c.name+" "+p]
				st.mu.Lock()
				st.requests++
				if got.xcache == "HIT" || got.xcache == "STALE" {
					st.hits++
				}
				if got.status == 401 || got.status == 403 {
					st.refusals++
				}
				st.mu.Unlock()
				if got.status != want.status || got.body != want.body {
					t.Fatalf("%s: %s as %s: got %d %.200s (X-Cache %s), want %d %.200s",
						label, p, c.name, got.status, got.body, got.xcache, want.status, want.body)
				}
				// A refusal is never a cached body. Owner routes and
				// authentication refuse before the cache (no X-Cache at
				// all); a chat session's owner is checked by its handler,
				// behind a key that carries the caller (a MISS or BYPASS
				// answered by the handler itself).
				if (got.status == 401 || got.status == 403) && (got.xcache == "HIT" || got.xcache == "STALE" ||
					(got.xcache != "" && !strings.HasPrefix(p, "/api/chat/"))) {
					t.Fatalf("%s: %s as %s: refusal went through the cache (X-Cache %s)", label, p, c.name, got.xcache)
				}
				for u, secrets := range w.secrets {
					if u == c.user {
						continue
					}
					for _, sec := range secrets {
						if strings.Contains(got.body, sec) {
							t.Fatalf("%s: %s as %s: body carries user %d's %q: %.200s", label, p, c.name, u, sec, got.body)
						}
					}
				}
			}
		}
		if len(ss) > 1 {
			time.Sleep(30 * time.Millisecond) // let Redis writes land so that the other instance reads them
		}
	}
}

// TestCacheScopeMatrix: every action × scope × key a hostile cache policy
// can return (global, another user's, empty, a public route's, 1 MiB) ×
// every caller (owner, other user, anonymous, forged token) on every
// user-scoped route (reputation, matches, location, chat sessions,
// messages and cost, for two subjects) and the public catalogue, with the
// in-process tier alone and with Redis shared by two instances: every
// answer is the one the caller gets without a cache, so no response body
// of user A ever reaches user B or an anonymous caller, and refused
// callers get 401/403, never a cached body.
func TestCacheScopeMatrix(t *testing.T) {
	cache.SilenceRedisLogs()
	w := newScopeWorld(t)
	ref := w.reference(t)
	tiers := []scopeTier{{name: "local"}, {name: "redis", redis: testkit.StartRedis(t)}}
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) {
			st := &scopeStats{}
			var all []*cache.Cache
			n := 0
			for _, a := range hostileActions {
				for _, sc := range hostileScopes {
					for _, k := range hostileKeys {
						n++
						label := fmt.Sprintf("action %d scope %d key %s", a, sc, k.name)
						ss, cs := tier.servers(t, w, hostileDecider{action: a, scope: sc, key: k}, fmt.Sprintf("scope%d", n))
						all = append(all, cs...)
						runScopeMatrix(t, w, ref, ss, st, label)
						st.decisions++
					}
				}
			}
			for _, c := range all {
				s := c.Stats()
				st.local += s.LocalHits
				st.redisHits += s.RedisHits
			}
			t.Logf("%s: %d decisions × %d paths × %d callers × 3 rounds = %d requests; %d served from the cache (%d local hits, %d Redis hits), %d refusals",
				tier.name, st.decisions, len(w.scopePaths()), len(scopeCallers), st.requests, st.hits, st.local, st.redisHits, st.refusals)
			if st.hits == 0 {
				t.Fatal("nothing was served from the cache: the matrix tested nothing")
			}
			if tier.redis != nil {
				if st.redisHits == 0 {
					t.Fatal("no Redis hit: the Redis tier was not exercised")
				}
				assertRedisKeysBounded(t, tier.redis)
			}
		})
	}
}

// assertRedisKeysBounded fails when any key in r is longer than the
// host's bound.
func assertRedisKeysBounded(t *testing.T, r *testkit.Redis) {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer cl.Close()
	ctx := context.Background()
	n, longest := 0, 0
	iter := cl.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		n++
		longest = max(longest, len(iter.Val()))
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	// Prefixes here are at most 10 bytes.
	if longest > 10+cache.MaxKeyBytes {
		t.Fatalf("a Redis key of %d bytes (bound %d)", longest, 10+cache.MaxKeyBytes)
	}
	t.Logf("Redis: %d keys, the longest %d bytes (bound %d + prefix)", n, longest, cache.MaxKeyBytes)
}

var (
	hostileGuestOnce sync.Once
	hostileGuest     []byte
	hostileGuestErr  error
)

// hostileGuestModule builds testdata/hostilecache for wasip1, once.
func hostileGuestModule(tb testing.TB) []byte {
	tb.Helper()
	hostileGuestOnce.Do(func() {
		root := testkit.RepoRoot(tb)
		dir, err := os.MkdirTemp("", "wingate-hostile-")
		if err != nil {
			hostileGuestErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "hostile.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./host/server/testdata/hostilecache")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			hostileGuestErr = fmt.Errorf("build hostilecache: %v\n%s", err, b)
			return
		}
		hostileGuest, hostileGuestErr = os.ReadFile(out)
	})
	if hostileGuestErr != nil {
		tb.Fatal(hostileGuestErr)
	}
	return hostileGuest
}

// TestCacheScopeThroughEngine: the same checks with the decision coming
// from a hostile Go guest through the real policy Engine: a global key, a
// key shared by everyone on per-user scope, the other user's key and a
// 500-byte key, all cached for 10 minutes, with both tiers. (A key over
// the runtime's limit never reaches the host: the engine serves the
// fallback, see TestOversizedKeyIsFallback.)
func TestCacheScopeThroughEngine(t *testing.T) {
	cache.SilenceRedisLogs()
	wasm := hostileGuestModule(t)
	ctx := context.Background()
	rt, err := policy.NewRuntime(ctx, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) })
	w := newScopeWorld(t)
	ref := w.reference(t)
	configs := []map[string]any{
		{"action": 1, "scope": 0, "ttl_s": 600, "key": "everyone"},
		{"action": 1, "scope": 1, "ttl_s": 600, "key": "everyone"},
		{"action": 1, "scope": 0, "ttl_s": 600, "other": true},
		{"action": 1, "scope": 0, "ttl_s": 600, "key": "/api/challenges"},
		// Under the runtime's key limit, but with the caller, route and
		// path over the host's: the host hashes the key body.
		{"action": 1, "scope": 0, "ttl_s": 600, "key_bytes": 500},
	}
	for _, tier := range []scopeTier{{name: "local"}, {name: "redis", redis: testkit.StartRedis(t)}} {
		t.Run(tier.name, func(t *testing.T) {
			st := &scopeStats{}
			for i, cfg := range configs {
				b, _ := json.Marshal(cfg)
				v, err := rt.Load(ctx, policy.Spec{Name: fmt.Sprint("hostile", i), Config: b, Deadline: time.Second}, wasm)
				if err != nil {
					t.Fatal(err)
				}
				eng := policy.NewEngine(policy.EngineOptions{})
				if _, err := eng.Activate(abi.KindCache, v); err != nil {
					t.Fatal(err)
				}
				// The guest really returns the hostile decision.
				d, res := eng.Cache(ctx, &abi.CacheRequest{Method: "GET", Route: routeLocation, Path: "/api/users/1/location", User: "1"})
				if res.Outcome != policy.OutcomeOK || d.Action != abi.CacheLookup {
					t.Fatalf("guest %s: decision %+v, result %+v", b, d.Action, res)
				}
				ss, _ := tier.servers(t, w, eng, fmt.Sprintf("eng%d", i))
				runScopeMatrix(t, w, ref, ss, st, "guest "+string(b))
			}
			t.Logf("%s: %d guest decisions, %d requests, %d served from the cache, %d refusals", tier.name, len(configs), st.requests, st.hits, st.refusals)
			if st.hits == 0 {
				t.Fatal("nothing was served from the cache")
			}
		})
	}
}

// TestCacheHugePolicyKey: a policy key of 15 MiB is written to Redis as a
// key of at most MaxKeyBytes past the prefix, and the entry still serves
// the next request.
func TestCacheHugePolicyKey(t *testing.T) {
	cache.SilenceRedisLogs()
	r := testkit.StartRedis(t)
	w := newScopeWorld(t)
	huge := strings.Repeat("k", 15<<20)
	dec := hostileDecider{action: abi.CacheLookup, scope: abi.ScopeGlobal,
		key: hostileKey{"15MiB", func(*abi.CacheRequest) string { return huge }}}
	ss, cs := scopeTier{name: "redis", redis: r}.servers(t, w, dec, "huge")
	if a := serveDirect(ss[0].handler, "/api/users/1/location", "Bearer u1"); a.status != 200 || a.xcache != "MISS" {
		t.Fatalf("first request: %+v", a)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if a := serveDirect(ss[1].handler, "/api/users/1/location", "Bearer u1"); a.xcache == "HIT" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the entry never reached the other instance through Redis")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cs[1].Stats().RedisHits == 0 {
		t.Fatal("no Redis hit")
	}
	assertRedisKeysBounded(t, r)
}

// TestOversizedKeyIsFallback: a 64 KiB key from a guest is an invalid
// decision; the engine answers the bypass fallback.
func TestOversizedKeyIsFallback(t *testing.T) {
	wasm := hostileGuestModule(t)
	ctx := context.Background()
	rt, err := policy.NewRuntime(ctx, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) })
	v, err := rt.Load(ctx, policy.Spec{Name: "hostile-key", Config: []byte(`{"action": 1, "scope": 0, "ttl_s": 600, "key_bytes": 65536}`), Deadline: time.Second}, wasm)
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(policy.EngineOptions{})
	if _, err := eng.Activate(abi.KindCache, v); err != nil {
		t.Fatal(err)
	}
	d, res := eng.Cache(ctx, &abi.CacheRequest{Method: "GET", Route: routeLocation, Path: "/api/users/1/location", User: "1"})
	if res.Outcome != policy.OutcomeFallback || d.Action != abi.CacheBypass {
		t.Fatalf("decision %+v, result %+v: want the bypass fallback for an invalid decision", d, res)
	}
}
