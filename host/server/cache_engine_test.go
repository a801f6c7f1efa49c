package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/plugins/cache/rules"
	"github.com/wingman-app/wingate/sdk/abi"
)

var (
	cachePluginOnce sync.Once
	cachePluginEng  *policy.Engine
	cachePluginErr  error
)

// cachePolicySpec is the cache entry of policies/policies.json as a load
// spec (configuration, deadline), or a spec with the policy's defaults
// when the file or entry is absent.
func cachePolicySpec(root string) policy.Spec {
	b, err := os.ReadFile(filepath.Join(root, "policies", "policies.json"))
	if err != nil {
		return policy.Spec{Name: "cache"}
	}
	f, err := policy.ParsePoliciesFile(b)
	if err != nil {
		return policy.Spec{Name: "cache"}
	}
	for _, p := range f.Policies {
		if p.Kind == "cache" {
			return p.Spec()
		}
	}
	return policy.Spec{Name: "cache"}
}

// cachePolicyConfig is the configuration part of cachePolicySpec.
func cachePolicyConfig(root string) []byte { return cachePolicySpec(root).Config }

// cachePluginEngine builds plugins/cache for wasip1 and serves it from a
// real policy Engine, once per test binary.
func cachePluginEngine(tb testing.TB) *policy.Engine {
	tb.Helper()
	cachePluginOnce.Do(func() {
		root := testkit.RepoRoot(tb)
		dir, err := os.MkdirTemp("", "wingate-cache-plugin-")
		if err != nil {
			cachePluginErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "cache.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./plugins/cache")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			cachePluginErr = fmt.Errorf("build plugins/cache: %v\n%s", err, b)
			return
		}
		wasm, err := os.ReadFile(out)
		if err != nil {
			cachePluginErr = err
			return
		}
		ctx := context.Background()
		rt, err := policy.NewRuntime(ctx, policy.Options{})
		if err != nil {
			cachePluginErr = err
			return
		}
		v, err := rt.Load(ctx, cachePolicySpec(root), wasm)
		if err != nil {
			cachePluginErr = err
			return
		}
		eng := policy.NewEngine(policy.EngineOptions{})
		if _, err := eng.Activate(abi.KindCache, v); err != nil {
			cachePluginErr = err
			return
		}
		cachePluginEng = eng
	})
	if cachePluginErr != nil {
		tb.Fatal(cachePluginErr)
	}
	return cachePluginEng
}

// TestCacheWithPolicyEngine runs the middleware against the real Engine and
// the default cache policy: the routes the policy caches are cached with
// the right lifetimes, writes purge, users stay apart.
func TestCacheWithPolicyEngine(t *testing.T) {
	poisonReleasedScratch(t)
	eng := cachePluginEngine(t)
	w := newWingmanApp(t, cache.Config{}, eng)
	f := &cacheFixture{s: w.s, c: w.c}
	steps := []struct {
		method, path string
		user         int64
		wantXCache   string
		wantBody     string
	}{
		{"GET", "/api/challenges", 1, "MISS", `"kind":"challenges"`},
		{"GET", "/api/challenges", 2, "HIT", `"kind":"challenges"`},
		{"GET", "/api/users/1/location", 1, "MISS", `"viewer":"1"`},
		{"GET", "/api/users/1/location", 2, "MISS", `"viewer":"2"`},
		{"GET", "/api/users/1/location", 1, "HIT", `"viewer":"1"`},
		{"GET", "/api/users/1/matches", 1, "MISS", `"kind":"matches@0"`},
		{"GET", "/api/users/1/matches", 1, "HIT", `"kind":"matches@0"`},
		{"PUT", "/api/users/1/location", 1, "BYPASS", `"ok":true`},
		{"GET", "/api/users/1/location", 1, "MISS", `"kind":"location@1"`},
		{"GET", "/api/users/1/location", 2, "MISS", `"viewer":"2"`},
		{"GET", "/api/users/1/matches", 1, "MISS", `"kind":"matches@1"`},
		{"GET", "/api/challenges", 1, "HIT", `"kind":"challenges"`},
		{"GET", "/api/users/1/reputation", 1, "MISS", `"viewer":"1"`},
		{"GET", "/api/users/1/reputation", 1, "HIT", `"viewer":"1"`},
	}
	for i, st := range steps {
		resp, body := f.do(t, st.method, st.path, st.user)
		if got := resp.Header.Get("X-Cache"); got != st.wantXCache || !strings.Contains(body, st.wantBody) {
			t.Fatalf("step %d %s %s as %d: X-Cache %s body %.80s; want %s with %s", i, st.method, st.path, st.user, got, body, st.wantXCache, st.wantBody)
		}
	}
}

// zipf draws ranks 0..n-1 with P(k) ∝ 1/(k+1)^s (s may be ≤ 1, which
// math/rand's Zipf does not allow) by inverting the cumulative weights.
type zipf struct {
	cdf []float64
	rng *rand.Rand
}

func newZipf(seed uint64, s float64, n int) *zipf {
	z := &zipf{cdf: make([]float64, n), rng: rand.New(rand.NewPCG(seed, 7))}
	sum := 0.0
	for k := range n {
		sum += 1 / math.Pow(float64(k+1), s)
		z.cdf[k] = sum
	}
	for k := range z.cdf {
		z.cdf[k] /= sum
	}
	return z
}

func (z *zipf) next() int {
	u := z.rng.Float64()
	lo, hi := 0, len(z.cdf)-1
	for lo < hi {
		m := (lo + hi) / 2
		if z.cdf[m] < u {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// nativeCachePolicy is plugins/cache's logic, configured as in the
// policies file, called as Go.
func nativeCachePolicy(tb testing.TB) policy.Decider {
	p, err := rules.Parse(cachePolicyConfig(testkit.RepoRoot(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	return nativeDecider{p}
}

type nativeDecider struct{ p *rules.Policy }

func (n nativeDecider) Cache(_ context.Context, r *abi.CacheRequest) (abi.CacheDecision, policy.Result) {
	return n.p.Decide(r), policy.Result{Kind: abi.KindCache, Policy: "cache-native"}
}

func (nativeDecider) Route(context.Context, *abi.RouteRequest) (abi.RouteDecision, policy.Result) {
	return policy.FallbackRoute(abi.TierStandard), policy.Result{}
}

func (nativeDecider) Compress(_ context.Context, r *abi.CompressRequest) (abi.CompressDecision, policy.Result) {
	return policy.FallbackCompress(r), policy.Result{}
}

// outcomeCounter counts the engine's decisions by outcome.
type outcomeCounter struct {
	policy.Decider
	mu sync.Mutex
	n  map[policy.Outcome]int
}

func (o *outcomeCounter) Cache(ctx context.Context, r *abi.CacheRequest) (abi.CacheDecision, policy.Result) {
	d, res := o.Decider.Cache(ctx, r)
	o.mu.Lock()
	if o.n == nil {
		o.n = map[policy.Outcome]int{}
	}
	o.n[res.Outcome]++
	o.mu.Unlock()
	return d, res
}

// TestCacheZipfHitRate: users drawn from Zipf(1.1) over 10,000 users read
// their reputation, matches, location and the catalogue through the real
// policy and the whole middleware chain; after warm-up the hit rate must
// be at least 95%. Requests go straight to the application's handler (no
// sockets) so that the test stays fast; TTLs (5 min and more) do not
// expire within it.
func TestCacheZipfHitRate(t *testing.T) {
	users, warmup, run := 10_000, 200_000, 200_000
	var base policy.Decider
	if raceEnabled {
		// Under the race detector the wasm engine is slow enough for its
		// deadlines to fire; run the same rules natively, on less traffic.
		warmup, run = 200_000, 20_000
		base = nativeCachePolicy(t)
	} else {
		base = cachePluginEngine(t)
	}
	dec := &outcomeCounter{Decider: base}
	w := newWingmanApp(t, cache.Config{MaxLocalBytes: 256 << 20}, dec)
	z := newZipf(1, 1.1, users)
	paths := []string{"/reputation", "/matches", "/location"}
	var xc = map[string]int{}
	status := map[int]int{}
	var rc fasthttp.RequestCtx
	do := func(count bool) {
		u := z.next() + 1
		path := "/api/challenges"
		if z.rng.IntN(4) != 0 {
			path = "/api/users/" + strconv.Itoa(u) + paths[z.rng.IntN(3)]
		}
		rc.Request.Reset()
		rc.Response.Reset()
		rc.Request.Header.SetMethod("GET")
		rc.Request.SetRequestURI(path)
		rc.Request.Header.Set("Authorization", "Bearer u"+strconv.Itoa(u))
		w.s.handler(&rc)
		if count {
			xc[string(rc.Response.Header.Peek("X-Cache"))]++
			status[rc.Response.StatusCode()]++
		}
	}
	if raceEnabled {
		// The warm-up only fills the cache: under the race detector it
		// asks the policy and fills the cache directly, as the middleware
		// would, instead of through the whole handler chain.
		warmDirect(t, w, dec, z, warmup)
	} else {
		for range warmup {
			do(false)
		}
	}
	before := w.c.Stats()
	for range run {
		do(true)
	}
	after := w.c.Stats()
	hits := (after.LocalHits - before.LocalHits) + (after.RedisHits - before.RedisHits) + (after.Stale - before.Stale)
	misses := after.Misses - before.Misses
	rate := float64(hits) / float64(run)
	t.Logf("Zipf(1.1) over %d users, %d requests after %d warm-up: hit rate %.2f%% (hits %d, misses %d; X-Cache %v; status %v; policy outcomes %v)",
		users, run, warmup, 100*rate, hits, misses, xc, status, dec.n)
	if status[200] != run {
		t.Fatalf("non-200 answers: %v", status)
	}
	if rate < 0.95 {
		t.Fatalf("hit rate %.2f%% < 95%%", 100*rate)
	}
}

// warmDirect draws n requests from z exactly as the measured run does and
// stores each one's response under the key the middleware would use.
func warmDirect(t *testing.T, w *wingmanApp, dec policy.Decider, z *zipf, n int) {
	t.Helper()
	paths := []string{"/reputation", "/matches", "/location"}
	routes := []string{"/api/users/:id/reputation", "/api/users/:id/matches", "/api/users/:id/location"}
	ctx := context.Background()
	for range n {
		u := z.next() + 1
		req := abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges"}
		if z.rng.IntN(4) != 0 {
			i := z.rng.IntN(3)
			req = abi.CacheRequest{Method: "GET", Route: routes[i], Path: "/api/users/" + strconv.Itoa(u) + paths[i], User: strconv.Itoa(u)}
		}
		d, _ := dec.Cache(ctx, &req)
		if d.Action != abi.CacheLookup {
			t.Fatalf("warm-up: policy bypassed %+v", req)
		}
		user := req.User
		if req.Route == "/api/challenges" && d.Scope == abi.ScopeGlobal {
			user = "" // the only public route
		}
		key := string(w.c.AppendRequestKey(nil, cache.RequestKey{User: user, Route: req.Route, Path: req.Path, PolicyKey: d.Key}))
		_, err := w.c.Get(ctx, &cache.Request{Key: key, Route: req.Route,
			TTL: time.Duration(d.TTLSeconds) * time.Second, Stale: time.Duration(d.StaleSeconds) * time.Second, Tags: d.Tags,
			Fill: func(context.Context) (*cache.Entry, error) {
				w.origin.Add(1)
				return &cache.Entry{Status: 200, ContentType: "application/json", Body: []byte("{}")}, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCacheHitAllocatesNothing: an in-process hit through the real Engine
// and the default cache policy (authentication, decision, key, lookup,
// headers) allocates nothing, so a read-heavy load does not drive the
// garbage collector, whose cycles showed in the tail latency. (A user id
// of 256 or more costs one 8-byte allocation: Go boxes the int64 that
// authentication stores in the request's locals.) Under the race
// detector allocations are not the program's own and are not counted.
func TestCacheHitAllocatesNothing(t *testing.T) {
	w := newWingmanApp(t, cache.Config{}, cachePluginEngine(t))
	for _, path := range []string{"/api/challenges", "/api/users/7/reputation"} {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("GET")
		rc.Request.SetRequestURI(path)
		rc.Request.Header.Set("Authorization", "Bearer u7")
		hit := []byte("HIT")
		serve := func() string {
			rc.Response.Reset()
			w.s.handler(&rc)
			if x := rc.Response.Header.Peek("X-Cache"); !bytes.Equal(x, hit) {
				return string(x)
			}
			return "HIT"
		}
		if got := serve(); got != "MISS" {
			t.Fatalf("%s: first X-Cache %q, want MISS", path, got)
		}
		if got := serve(); got != "HIT" {
			t.Fatalf("%s: second X-Cache %q, want HIT", path, got)
		}
		if raceEnabled {
			continue
		}
		if n := testing.AllocsPerRun(500, func() {
			if got := serve(); got != "HIT" {
				t.Fatalf("%s: X-Cache %q, want HIT", path, got)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per cached hit, want 0", path, n)
		}
	}
}

// TestCacheHammerWithPolicyEngine: many goroutines read user-scoped routes
// through the real Engine and the default policy, with writes purging as
// they go. The hit path decides into pooled memory that the next request
// reuses, so a key, tag or user id kept past its request would show here
// as one user served another's entry, or a subject's data under the wrong
// subject. Run with -race.
func TestCacheHammerWithPolicyEngine(t *testing.T) {
	poisonReleasedScratch(t)
	w := newWingmanApp(t, cache.Config{}, cachePluginEngine(t))
	users := []int64{7, 42, 300, 4242, 65536, 1234567}
	workers, rounds := 16, 300
	if raceEnabled {
		rounds = 60
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rc fasthttp.RequestCtx
			for i := range rounds {
				if failed.Load() {
					return
				}
				me := users[(g+i)%len(users)]
				subject := users[(g*7+i*3)%len(users)]
				kind := [...]string{"reputation", "matches", "location"}[(g+i)%3]
				method := "GET"
				if i%17 == 0 {
					method, subject, kind = "PUT", me, "location"
				}
				rc.Request.Reset()
				rc.Response.Reset()
				rc.Request.Header.SetMethod(method)
				rc.Request.SetRequestURI(fmt.Sprintf("/api/users/%d/%s", subject, kind))
				rc.Request.Header.Set("Authorization", fmt.Sprintf("Bearer u%d", me))
				w.s.handler(&rc)
				if st := rc.Response.StatusCode(); st != 200 {
					failed.Store(true)
					t.Errorf("%s %s as %d: status %d %s", method, rc.Request.URI().Path(), me, st, rc.Response.Body())
					return
				}
				if method != "GET" {
					continue
				}
				var got struct{ Kind, Viewer, Subject string }
				if err := json.Unmarshal(rc.Response.Body(), &got); err != nil {
					failed.Store(true)
					t.Errorf("bad body: %v", err)
					return
				}
				if got.Viewer != strconv.FormatInt(me, 10) || got.Subject != strconv.FormatInt(subject, 10) || !strings.HasPrefix(got.Kind, kind+"@") {
					failed.Store(true)
					t.Errorf("user %d asked for %s of %d and got kind %q viewer %s subject %s (X-Cache %s)",
						me, kind, subject, got.Kind, got.Viewer, got.Subject, rc.Response.Header.Peek("X-Cache"))
					return
				}
			}
		}()
	}
	wg.Wait()
	if s := w.c.Stats(); s.LocalHits == 0 {
		t.Fatalf("nothing was served from the cache: %+v", s)
	}
}

// poisonReleasedScratch makes the cache middleware overwrite its scratch
// memory when a request is done, for the rest of the test.
func poisonReleasedScratch(t *testing.T) {
	poisonScratch.Store(true)
	t.Cleanup(func() { poisonScratch.Store(false) })
}
