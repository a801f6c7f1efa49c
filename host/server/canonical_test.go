package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/sdk/abi"
)

// TestRouteTableCoversAPI: every /api route the server serves (with
// every dependency present) is declared in apiRoutes, and every declared
// route is served; routes that are not public refuse anonymous callers.
func TestRouteTableCoversAPI(t *testing.T) {
	w := newScopeWorld(t)
	s := New(DefaultConfig(), Deps{Store: w.st, Chat: w.chat, Auth: fakeTokens{}, Alerts: nil})
	s.registerAPI(fiber.MethodGet, pathAlerts, func(c *fiber.Ctx) error { return c.SendString("[]") })
	served := map[string]bool{}
	for _, r := range s.app.GetRoutes(true) {
		if r.Method == fiber.MethodHead || !isAPITemplate(r.Path) {
			continue
		}
		if _, ok := lookupAPIRoute(r.Method, r.Path); !ok {
			t.Errorf("%s %s is served but not declared in apiRoutes", r.Method, r.Path)
		}
		served[r.Method+" "+r.Path] = true
	}
	s.handler = s.app.Handler()
	for _, r := range apiRoutes {
		if !served[r.Method+" "+r.Path] {
			t.Errorf("%s %s is declared but not served", r.Method, r.Path)
		}
		if r.Access == Public {
			continue
		}
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod(r.Method)
		rc.Request.SetRequestURI(strings.ReplaceAll(r.Path, ":id", "1"))
		s.handler(&rc)
		if rc.Response.StatusCode() != 401 {
			t.Errorf("%s %s (%s) answered an anonymous caller %d", r.Method, r.Path, r.Access, rc.Response.StatusCode())
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("registering an undeclared route did not panic")
		}
	}()
	s.registerAPI(fiber.MethodGet, "/api/undeclared", func(c *fiber.Ctx) error { return nil })
}

func isAPITemplate(p string) bool { return p == "/api" || strings.HasPrefix(p, "/api/") }

// TestIDSpellings: ids are decimal digits with leading zeros ignored; any
// other spelling is a 400 invalid_id before the handler or the cache.
func TestIDSpellings(t *testing.T) {
	w := newScopeWorld(t)
	c, err := cache.New(cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := w.server(c, nativeCachePolicy(t))
	for _, sp := range []string{"1", "01", "0001", "00000000000000000001"} {
		a := serveDirect(s.handler, "/api/users/"+sp+"/location", "Bearer u1")
		if a.status != 200 || !strings.Contains(a.body, `"user_id":1`) {
			t.Errorf("%q: %d %s", sp, a.status, a.body)
		}
	}
	for _, sp := range []string{"+1", "-1", "%2B1", "%31", "1e0", "0x1", "1.0", "0", "000", " 1", "1%20", "１",
		"000000000000000000001", "9223372036854775808", "99999999999999999999"} {
		a := serveDirect(s.handler, "/api/users/"+sp+"/location", "Bearer u1")
		if a.status != 400 || !strings.Contains(a.body, `"invalid_id"`) {
			t.Errorf("%q: %d %s, want 400 invalid_id", sp, a.status, a.body)
		}
	}
	// Case and a trailing slash reach the same route and the same entry.
	serveDirect(s.handler, "/api/users/1/location", "Bearer u1")
	for _, p := range []string{"/api/users/01/location", "/API/Users/001/Location", "/api/users/1/location/"} {
		if a := serveDirect(s.handler, p, "Bearer u1"); a.xcache != "HIT" {
			t.Errorf("%s: X-Cache %q, want HIT", p, a.xcache)
		}
	}
}

// canonicalModel is the test's own idea of a request's identity: route,
// numeric ids, the first value of each declared query parameter, and the
// caller on routes that are not public.
func canonicalModel(r apiRoute, ids []uint64, caller int64, query string) string {
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	args.Parse(query)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %v", r.Method, r.Path, ids)
	names := append([]string(nil), r.Query...)
	sort.Strings(names)
	for _, n := range names {
		if v := args.Peek(n); len(v) > 0 {
			fmt.Fprintf(&b, " %s=%q", n, v)
		}
	}
	if r.Access != Public {
		fmt.Fprintf(&b, " caller=%d", caller)
	}
	return b.String()
}

// badIDSpellings write an id in a form the host refuses (400
// invalid_id): a sign, spaces, a decimal point, an exponent, hex, other
// scripts' digits, percent-encoded signs, zero.
var badIDSpellings = []func(string) string{
	func(d string) string { return "+" + d },
	func(d string) string { return "-" + d },
	func(d string) string { return "%2B" + d },
	func(d string) string { return "%20" + d },
	func(d string) string { return d + "%20" },
	func(d string) string { return d + ".0" },
	func(d string) string { return d + "e0" },
	func(d string) string { return "0x" + d },
	func(d string) string { return d + "%00" },
	func(string) string { return "%D9%A1" }, // ١, Arabic-Indic one
	func(string) string { return "0" },
	func(string) string { return "99999999999999999999" },
}

// spellID writes id with 0 to 3 leading zeros (the same id) or, one time
// in five, in a spelling the host refuses (ok false).
func spellID(rng *rand.Rand, id uint64) (string, bool) {
	d := strconv.FormatUint(id, 10)
	if rng.IntN(5) == 0 {
		return badIDSpellings[rng.IntN(len(badIDSpellings))](d), false
	}
	return strings.Repeat("0", rng.IntN(4)) + d, true
}

// randomQuery mixes declared parameters (from small value sets, sometimes
// repeated or empty) with random unknown ones, in random order.
func randomQuery(rng *rand.Rand, declared []string) string {
	var parts []string
	for range rng.IntN(4) {
		parts = append(parts, fmt.Sprintf("utm_%d=%d", rng.IntN(1000), rng.Uint32()))
	}
	for _, n := range declared {
		switch rng.IntN(4) {
		case 0:
			parts = append(parts, n+"="+strconv.Itoa(1+rng.IntN(3)))
		case 1:
			parts = append(parts, n+"="+strconv.Itoa(1+rng.IntN(3)), n+"="+strconv.Itoa(50+rng.IntN(50)))
		case 2:
			parts = append(parts, n+"=")
		}
	}
	rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	return strings.Join(parts, "&")
}

// TestCanonicalRequestGrowth: 10,000 requests with random unknown query
// parameters, id spellings, letter case and trailing slashes, through the
// real routes and the default cache policy, with two instances sharing
// Redis: each tier grows by at most as many entries as there are distinct
// canonical requests; then a write through one id spelling purges every
// spelling, on both instances.
func TestCanonicalRequestGrowth(t *testing.T) {
	cache.SilenceRedisLogs()
	r := testkit.StartRedis(t)
	w := newScopeWorld(t)
	ctx := context.Background()
	if _, err := w.st.PutLocation(ctx, store.Location{UserID: 3, Lat: 5, Lon: 5}); err != nil {
		t.Fatal(err)
	}
	ss, cs := scopeTier{name: "redis", redis: r}.servers(t, w, nativeCachePolicy(t), "canon")
	type target struct {
		r    apiRoute
		path string // with %s for the id
	}
	var targets []target
	for _, p := range []string{routeChallenges, routeChallenge, routeReputation, routeMatches, routeLocation} {
		rt, _ := lookupAPIRoute(fiber.MethodGet, p)
		targets = append(targets, target{rt, strings.ReplaceAll(p, ":id", "%s")})
	}
	rng := rand.New(rand.NewPCG(16, 3))
	distinct, distinctOK, raw := map[string]bool{}, map[string]bool{}, map[string]bool{}
	status := map[int]int{}
	refused := 0 // ids in a refused spelling
	const n = 10_000
	for i := range n {
		tg := targets[rng.IntN(len(targets))]
		caller := int64(1 + rng.IntN(3))
		var ids []uint64
		path := tg.path
		good := true
		if strings.Contains(path, "%s") {
			id := uint64(1 + rng.IntN(3))
			if tg.r.Access == Owner {
				id = uint64(caller)
			}
			ids = append(ids, id)
			var sp string
			sp, good = spellID(rng, id)
			path = fmt.Sprintf(path, sp)
		}
		if rng.IntN(4) == 0 {
			path += "/"
		}
		if rng.IntN(4) == 0 {
			path = strings.ToUpper(path[:5]) + path[5:]
		}
		q := randomQuery(rng, tg.r.Query)
		if q != "" {
			path += "?" + q
		}
		a := serveDirect(ss[i%2].handler, path, "Bearer u"+strconv.FormatInt(caller, 10))
		if !good {
			refused++
			if a.status != 400 || !strings.Contains(a.body, `"invalid_id"`) || a.xcache != "" {
				t.Fatalf("%s: %d X-Cache %q %s, want 400 invalid_id before the cache", path, a.status, a.xcache, a.body)
			}
			continue
		}
		status[a.status]++
		m := canonicalModel(tg.r, ids, caller, q)
		distinct[m] = true
		if a.status == 200 {
			distinctOK[m] = true
			raw[path+" "+strconv.FormatInt(caller, 10)] = true
		}
	}
	// Let the Redis writers finish: the key count stops changing.
	cl := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer cl.Close()
	redisEntries := func() int {
		keys, err := cl.Keys(ctx, "canon:"+cache.FormatVersion+":k:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	last := -1
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		if n := redisEntries(); n == last {
			break
		} else {
			last = n
		}
	}
	local := []int{cs[0].LocalEntries(), cs[1].LocalEntries()}
	t.Logf("%d requests: %d refused spellings of an id (400 invalid_id); %d distinct canonical requests (%d answered 200, which %d raw spellings reached); entries: Redis %d, in-process %v; statuses %v",
		n, refused, len(distinct), len(distinctOK), len(raw), last, local, status)
	if refused < n/20 {
		t.Fatalf("only %d refused spellings: the test did not try them", refused)
	}
	if last > len(distinctOK) || local[0] > len(distinctOK) || local[1] > len(distinctOK) {
		t.Fatalf("entries (Redis %d, in-process %v) exceed the %d distinct canonical requests answered 200", last, local, len(distinctOK))
	}
	if last == 0 || local[0] == 0 {
		t.Fatal("nothing was cached")
	}
	// Some random values of declared parameters are out of range (400);
	// nothing else may fail.
	if status[200]+status[400] != n-refused || status[200] < n/2 {
		t.Fatalf("statuses %v, want 200s and some 400s only", status)
	}

	// A write through one spelling purges every spelling, on both
	// instances (the other one through Redis' purge channel).
	spellings := []string{"/api/users/1/location", "/api/users/01/location", "/API/users/001/location/", "/api/users/0001/location?utm=1"}
	for i, p := range spellings {
		serveDirect(ss[i%2].handler, p, "Bearer u1")
	}
	put := func(s *Server, path string, lat float64) {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("PUT")
		rc.Request.SetRequestURI(path)
		rc.Request.Header.Set("Authorization", "Bearer u1")
		rc.Request.Header.SetContentType("application/json")
		rc.Request.SetBodyString(fmt.Sprintf(`{"lat": %v, "lon": 1.5}`, lat))
		s.handler(&rc)
		if rc.Response.StatusCode() != 200 {
			t.Fatalf("PUT %s: %d %s", path, rc.Response.StatusCode(), rc.Response.Body())
		}
	}
	for _, bad := range []string{"/api/users/+1/location", "/api/users/%2B1/location", "/api/users/1.0/location", "/api/users/%201/location"} {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("PUT")
		rc.Request.SetRequestURI(bad)
		rc.Request.Header.Set("Authorization", "Bearer u1")
		rc.Request.Header.SetContentType("application/json")
		rc.Request.SetBodyString(`{"lat": 66, "lon": 1.5}`)
		ss[0].handler(&rc)
		if rc.Response.StatusCode() != 400 {
			t.Fatalf("PUT through the refused spelling %s: %d %s, want 400", bad, rc.Response.StatusCode(), rc.Response.Body())
		}
	}
	put(ss[0], "/api/users/0001/location", 12.5)
	want := `"lat":12.5`
	deadline := time.Now().Add(2 * time.Second)
	for _, sp := range append(spellings, "/api/users/00000001/location?x=y") {
		for i, s := range ss {
			for {
				a := serveDirect(s.handler, sp, "Bearer u1")
				if strings.Contains(a.body, want) {
					break
				}
				if i == 0 || time.Now().After(deadline) {
					t.Fatalf("instance %d, spelling %q after a write through 0001: %s (X-Cache %s)", i, sp, a.body, a.xcache)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}

// FuzzCacheKey fuzzes the request-to-cache-key path: two requests, each a
// route of the table, an id spelling, a raw query and a caller, through
// the real canonicalisation, a hostile policy (one shared key, global or
// per-user scope) and the key builder. Invariants: the key is
// deterministic, at most MaxKeyBytes past the prefix, carries the caller
// on every route that is not public, and two requests get the same key
// exactly when they are the same canonical request.
func FuzzCacheKey(f *testing.F) {
	f.Add(uint8(3), "1", "recent=5&x=1", int64(1), false, uint8(3), "01", "x=2&recent=5", int64(1), false)
	f.Add(uint8(0), "", "limit=5&limit=6", int64(0), false, uint8(0), "", "limit=5", int64(0), false)
	f.Add(uint8(5), "1", "", int64(1), true, uint8(5), "1", "", int64(2), true)
	f.Add(uint8(0), "", "category=a%26b", int64(1), false, uint8(0), "", "category=a&b", int64(1), false)
	f.Add(uint8(9), "abc", "after=1", int64(1), false, uint8(9), "ABC", "after=01", int64(1), false)
	c, err := cache.New(cache.Config{Prefix: "fz"})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	type keyResult struct {
		Key    string `json:"key"`
		Model  string `json:"model"`
		Cached bool   `json:"cached"`
	}
	s := New(DefaultConfig(), Deps{Auth: fakeTokens{}, Cache: c, CachePolicy: hostileDecider{action: abi.CacheLookup}})
	var gets []*compiledRoute
	for _, r := range apiRoutes {
		if r.Method != fiber.MethodGet {
			continue
		}
		cr := compileRoute(r)
		gets = append(gets, cr)
		var chain []fiber.Handler
		if r.Access != Public {
			chain = append(chain, s.requireAuth)
		}
		chain = append(chain, func(c *fiber.Ctx) error {
			keyOnce := func() (string, bool, error) {
				sc := new(cacheScratch)
				if err := cr.canonicalise(c, sc); err != nil {
					return "", false, err
				}
				if me, ok := userID(c); ok {
					sc.user = strconv.AppendInt(nil, me, 10)
				}
				ok := s.decideKey(c, cr, sc)
				return string(sc.key), ok, nil
			}
			k1, ok1, err := keyOnce()
			if err != nil {
				return err
			}
			k2, ok2, _ := keyOnce()
			if k1 != k2 || ok1 != ok2 {
				return fmt.Errorf("not deterministic: %q then %q", k1, k2)
			}
			var ids []uint64
			for _, sg := range cr.segs {
				if sg.param && sg.id {
					id, _ := strconv.ParseUint(strings.TrimLeft(c.Params(sg.text), "0"), 10, 64)
					ids = append(ids, id)
				}
			}
			me, _ := userID(c)
			m := canonicalModel(cr.apiRoute, ids, me, string(c.Request().URI().QueryString()))
			if cr.Tokens != nil {
				m += " token=" + c.Params("id")
			}
			return c.JSON(keyResult{k1, m, ok1})
		})
		s.app.Get(strings.Replace(r.Path, "/api/", "/fz/", 1), chain...)
	}
	h := s.app.Handler()
	scope := func(perUser bool) abi.Scope {
		if perUser {
			return abi.ScopeUser
		}
		return abi.ScopeGlobal
	}
	do := func(t *testing.T, route uint8, id, query string, user int64, perUser bool) (keyResult, bool) {
		cr := gets[int(route)%len(gets)]
		s.deps.CachePolicy = hostileDecider{action: abi.CacheLookup, scope: scope(perUser),
			key: hostileKey{"shared", func(*abi.CacheRequest) string { return "shared" }}}
		p := strings.Replace(cr.Path, "/api/", "/fz/", 1)
		p = strings.ReplaceAll(p, ":id", url.PathEscape(id))
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("GET")
		rc.Request.SetRequestURI(p)
		rc.Request.URI().SetQueryString(query)
		if user > 0 {
			rc.Request.Header.Set("Authorization", "Bearer u"+strconv.FormatInt(user, 10))
		}
		h(&rc)
		switch rc.Response.StatusCode() {
		case 200:
		case 400, 401, 404:
			return keyResult{}, false
		default:
			t.Fatalf("%s?%s: %d %s", p, query, rc.Response.StatusCode(), rc.Response.Body())
		}
		var kr keyResult
		if err := json.Unmarshal(rc.Response.Body(), &kr); err != nil {
			t.Fatal(err)
		}
		if !kr.Cached {
			return kr, false
		}
		if len(kr.Key) > len("fz")+cache.MaxKeyBytes {
			t.Fatalf("key of %d bytes", len(kr.Key))
		}
		if cr.Access != Public || perUser {
			u := strconv.FormatInt(user, 10)
			if !strings.HasPrefix(kr.Key, "fz:"+cache.FormatVersion+":k:u:"+strconv.Itoa(len(u))+":"+u+":") {
				t.Fatalf("caller %d missing from key %q of %s", user, kr.Key, cr.Path)
			}
		}
		if perUser && cr.Access == Public {
			kr.Model += " per-user " + strconv.FormatInt(user, 10)
		}
		return kr, true
	}
	f.Fuzz(func(t *testing.T, r1 uint8, id1, q1 string, u1 int64, s1 bool, r2 uint8, id2, q2 string, u2 int64, s2 bool) {
		a, ok := do(t, r1, id1, q1, u1%4, s1)
		if !ok {
			return
		}
		b, ok := do(t, r2, id2, q2, u2%4, s2)
		if !ok {
			return
		}
		if (a.Model == b.Model) != (a.Key == b.Key) {
			t.Fatalf("model %q key %q\nmodel %q key %q", a.Model, a.Key, b.Model, b.Key)
		}
	})
}
