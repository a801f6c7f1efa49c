package drill

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// fleetShape is the size of one fleet drill.
type fleetShape struct {
	Rate    int           // cached GET requests a second, spread over the instances
	Load    time.Duration // how long the load runs
	Purges  int           // location writes on one instance, each timed on the others
	Pushes  int           // policy activations on one instance, each timed on the others
	Catalog int           // distinct catalogue pages the load asks for
}

func fleetSize() fleetShape {
	if *full {
		return fleetShape{Rate: 500, Load: 20 * time.Second, Purges: 1000, Pushes: 20, Catalog: 50}
	}
	return fleetShape{Rate: 150, Load: 4 * time.Second, Purges: 60, Pushes: 4, Catalog: 50}
}

// fleet is three `wingate serve` processes on one PostgreSQL and one
// Redis (its URL: one server, a Sentinel primary or a cluster).
type fleet struct {
	members []*member
}

func startFleet(t *testing.T, redisURL string) *fleet {
	t.Helper()
	bin := wingateBinary(t)
	dbURL := database(t)
	pdir := policyDir(t)
	logDir := t.TempDir()
	f := &fleet{}
	for i := range 3 {
		m := &member{name: fmt.Sprintf("wingate%d", i+1), addr: freeAddr(t), ops: freeAddr(t),
			args:    []string{"--jwt-secret", jwtSecret, "--admin-token", adminToken, "--policy-dir", pdir, "--log-level", "info"},
			env:     []string{"DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL},
			logPath: filepath.Join(logDir, fmt.Sprintf("wingate%d.log", i+1))}
		m.start(t, bin)
		f.members = append(f.members, m)
		t.Cleanup(func() {
			if m.cmd != nil {
				m.stop(t)
			}
		})
	}
	return f
}

// fleetLoad sends cached catalogue GETs at rate a second, round robin
// over the instances, and counts X-Cache outcomes.
type fleetLoad struct {
	clientTally
	hits, misses, other atomic.Int64
	firstOther          atomic.Value
}

func runFleetLoad(ctx context.Context, f *fleet, rate, pages int) *fleetLoad {
	return runFleetPaths(ctx, f, rate, func(n int) (string, string) {
		return fmt.Sprintf("/api/challenges?limit=%d", 1+(n/len(f.members))%pages), ""
	})
}

// runFleetPaths sends GETs at rate a second, round robin over the
// instances; the n-th goes to path(n) with its bearer token (none when
// empty).
func runFleetPaths(ctx context.Context, f *fleet, rate int, path func(n int) (string, string)) *fleetLoad {
	l := &fleetLoad{}
	clients := make([]*fasthttp.HostClient, len(f.members))
	for i, m := range f.members {
		clients[i] = &fasthttp.HostClient{Addr: m.addr, MaxConns: 128, MaxIdemponentCallAttempts: 1, ReadTimeout: 10 * time.Second}
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func(n int) {
				defer l.wg.Done()
				m, hc := f.members[n%len(f.members)], clients[n%len(f.members)]
				req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(res)
				p, tok := path(n)
				req.SetRequestURI("http://" + m.addr + p)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				t0 := time.Now()
				err := hc.Do(req, res)
				if err == nil && res.StatusCode() != http.StatusOK {
					err = fmt.Errorf("status %d", res.StatusCode())
				}
				switch strings.ToLower(string(res.Header.Peek("X-Cache"))) {
				case "hit", "stale":
					l.hits.Add(1)
				case "miss":
					l.misses.Add(1)
				default:
					if l.other.Add(1) == 1 {
						l.firstOther.Store(fmt.Sprintf("X-Cache %q, status %d", res.Header.Peek("X-Cache"), res.StatusCode()))
					}
				}
				l.note(t0, err)
			}(n)
		}
	}()
	return l
}

// hitRate is the share of lookups answered from the cache.
func (l *fleetLoad) hitRate() float64 {
	h, m := l.hits.Load(), l.misses.Load()
	if h+m == 0 {
		return 0
	}
	return float64(h) / float64(h+m)
}

// purgeLag writes a user's location on instance 0 and times how long
// after the write's answer each other instance serves the new location
// (whose previous one both had cached): one figure per instance.
func purgeLag(t *testing.T, f *fleet, user int64, round int) ([]time.Duration, error) {
	t.Helper()
	tok := token(user)
	path := fmt.Sprintf("/api/users/%d/location", user)
	// Both others hold the current location in their caches.
	for _, m := range f.members[1:] {
		for range 2 {
			if st, _, _, err := do(http.MethodGet, "http://"+m.addr+path, tok, "", nil); err != nil || st != http.StatusOK {
				return nil, fmt.Errorf("GET %s on %s: %d %v", path, m.name, st, err)
			}
		}
	}
	lat := 10 + float64(round%7000)/1000
	body := fmt.Sprintf(`{"lat": %.3f, "lon": 20.5}`, lat)
	st, _, _, err := do(http.MethodPut, "http://"+f.members[0].addr+path, tok, body, map[string]string{"Content-Type": "application/json"})
	if err != nil || st/100 != 2 {
		return nil, fmt.Errorf("PUT %s on %s: %d %v", path, f.members[0].name, st, err)
	}
	wrote := time.Now()
	var lags []time.Duration
	for _, m := range f.members[1:] {
		for {
			a, err := doJSON(http.MethodGet, "http://"+m.addr+path, tok, "", nil)
			if got, _ := a.Body["lat"].(float64); err == nil && a.Status == http.StatusOK && fmt.Sprintf("%.3f", got) == fmt.Sprintf("%.3f", lat) {
				lags = append(lags, time.Since(wrote))
				break
			}
			if time.Since(wrote) > 10*time.Second {
				return nil, fmt.Errorf("%s still serves the old location 10 s after the write: %d %v (%v)", m.name, a.Status, a.Body, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return lags, nil
}

// runFleetDrill is the drill on one Redis deployment: cached load over
// the three instances with its hit rate, purges written on one instance
// and timed on the others, and policy activations on one instance timed
// until all three serve the version.
func runFleetDrill(t *testing.T, redisURL string) (hitRate float64) {
	s := fleetSize()
	f := startFleet(t, redisURL)

	ctx, cancel := context.WithCancel(context.Background())
	load := runFleetLoad(ctx, f, s.Rate, s.Catalog)

	// Purges during the load, over users that have a location.
	const purgeUsers = 20
	for u := int64(1); u <= purgeUsers; u++ {
		body := `{"lat": 1.5, "lon": 2.5}`
		if st, _, _, err := do(http.MethodPut, fmt.Sprintf("http://%s/api/users/%d/location", f.members[0].addr, u), token(u), body,
			map[string]string{"Content-Type": "application/json"}); err != nil || st/100 != 2 {
			t.Fatalf("location of user %d: %d %v", u, st, err)
		}
	}
	var lags durations
	for i := range s.Purges {
		l, err := purgeLag(t, f, int64(1+i%purgeUsers), i)
		if err != nil {
			t.Fatal(err)
		}
		lags = append(lags, l...)
	}
	// Policy activations during the load: two versions of the shipped
	// cache policy, pushed once to the fleet's store through instance 0,
	// then activated there in turn.
	h0 := &host{base: "http://" + f.members[0].addr, ops: "http://" + f.members[0].ops}
	ids := pushVariants(t, h0, "fleet-a", "fleet-b")
	var spread durations
	for i := range s.Pushes {
		want := ids[i%2]
		a, err := admin(http.MethodPost, fmt.Sprintf("%s/admin/policies/%d/activate", h0.ops, want))
		if err != nil || a.Status != http.StatusOK {
			t.Fatalf("activate %d on %s: %d %v (%v)", want, f.members[0].name, a.Status, a.Body, err)
		}
		done := time.Now()
		var last time.Duration
		for _, m := range f.members {
			for {
				if e, ok := activeEntry("http://"+m.ops, "cache"); ok && activeID(e) == want {
					last = max(last, time.Since(done))
					break
				}
				if time.Since(done) > 30*time.Second {
					t.Fatalf("%s does not serve cache version %d 30 s after its activation", m.name, want)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		spread = append(spread, last)
	}
	rest := s.Load - time.Since(load.spans0())
	if rest > 0 {
		time.Sleep(rest)
	}
	cancel()
	load.wait()

	t.Logf("load: %d cached GETs over 3 instances, %d failed %v; hit rate %.1f%% (%d hits, %d misses, %d other); p99 %v",
		load.sent, load.failed, load.errs, 100*load.hitRate(), load.hits.Load(), load.misses.Load(), load.other.Load(), load.quantile(0.99))
	t.Logf("purges: %d writes on %s, seen by the other two after p50 %v, p99 %v, max %v",
		s.Purges, f.members[0].name, lags.quantile(0.5), lags.quantile(0.99), lags.quantile(1))
	t.Logf("policy activations: %d on %s, served by all three after p50 %v, p99 %v, max %v",
		s.Pushes, f.members[0].name, spread.quantile(0.5), spread.quantile(0.99), spread.quantile(1))
	if load.failed > 0 {
		t.Errorf("%d of %d cached GETs failed: %v", load.failed, load.sent, load.errs)
	}
	if v := load.firstOther.Load(); v != nil {
		t.Logf("first answer neither hit nor miss: %v", v)
	}
	if load.hitRate() < 0.5 {
		t.Errorf("hit rate %.1f%% over %d pages: the cache is not shared or not used", 100*load.hitRate(), s.Catalog)
	}
	if p99 := lags.quantile(0.99); p99 > 100*time.Millisecond {
		t.Errorf("a purge on one instance reached the others after %v (p99); want ≤ 100 ms", p99)
	}
	if p99 := spread.quantile(0.99); p99 > time.Second {
		t.Errorf("an activation on one instance reached all three after %v (p99); want ≤ 1 s", p99)
	}
	return load.hitRate()
}

// spans0 is when the first call of the load started (now if none).
func (l *fleetLoad) spans0() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.spans) == 0 {
		return time.Now()
	}
	return slices.MinFunc(l.spans, func(a, b span) int { return a.start.Compare(b.start) }).start
}

// activeID is the version id in an /admin/status active entry.
func activeID(e map[string]any) int64 {
	v, _ := e["id"].(float64)
	return int64(v)
}

// TestDrillFleetRedis: the fleet drill on one Redis server of its own,
// then on a six-node Redis Cluster (three primaries with one replica
// each, redis-server processes of its own): every figure holds on both,
// and the cluster's hit rate is within 2 points of the single server's.
func TestDrillFleetRedis(t *testing.T) {
	var single, cluster float64
	t.Run("single", func(t *testing.T) {
		single = runFleetDrill(t, testkit.StartRedis(t).URL())
	})
	t.Run("cluster", func(t *testing.T) {
		c := startCluster(t)
		cluster = runFleetDrill(t, c.URL())
	})
	t.Logf("hit rate: single server %.1f%%, cluster %.1f%%", 100*single, 100*cluster)
	// The drill (-drill, 20 s at 500 rps) holds the 2 points. The
	// short run's 600 requests over 50 pages are dominated by their cold
	// misses, which move a run's rate by about 2 points either way: it
	// checks that both are shared caches, within 5.
	within := 0.02
	if !*full {
		within = 0.05
	}
	if single > 0 && cluster > 0 && (cluster < single-within || cluster > single+within) {
		t.Errorf("the cluster's hit rate %.1f%% is not within %.0f points of the single server's %.1f%%", 100*cluster, 100*within, 100*single)
	}
}

func startCluster(t *testing.T) *testkit.RedisCluster {
	t.Helper()
	c, err := testkit.StartRedisCluster()
	if err != nil {
		t.Fatalf("redis cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	t.Logf("redis cluster of six nodes ok after %v", c.StartTime.Round(time.Millisecond))
	return c
}

// TestDrillFleetClusterFailover kills one of the cluster's primaries
// under the fleet's load: the replica is promoted; no request fails and
// none is slowed past 200 ms by Redis; and within 5 s of the promotion an
// entry one instance fills is a hit on another again (the fleet shares
// its cache through the cluster).
func TestDrillFleetClusterFailover(t *testing.T) {
	c := startCluster(t)
	var lost *testkit.RedisNode
	runFailoverDrill(t, c.URL(), func(ctx context.Context) string {
		prim, err := c.Primaries(ctx)
		if err != nil || len(prim) != 3 {
			t.Fatalf("primaries: %v %v", prim, err)
		}
		lost = prim[0]
		lost.Kill()
		return lost.Addr()
	}, func(ctx context.Context) error { return c.WaitPromoted(ctx, lost) })
}

// TestDrillFleetSentinelFailover is the same with Redis Sentinel (a
// primary, a replica and a sentinel, redis-server processes of its own):
// the primary is killed and the sentinel promotes the replica.
func TestDrillFleetSentinelFailover(t *testing.T) {
	s := testkit.StartRedisSentinel(t)
	runFailoverDrill(t, s.URL(), func(context.Context) string {
		s.Primary.Kill()
		return s.Primary.Addr()
	}, func(ctx context.Context) error {
		cl := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr(), MaxRetries: -1})
		defer cl.Close()
		for {
			addr, err := cl.GetMasterAddrByName(ctx, "primary").Result()
			if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == s.Replica.Addr() {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("sentinel did not promote the replica: %v %v", addr, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// runFailoverDrill runs the fleet on redisURL under load, kills a primary
// (kill returns its address) and waits for the promotion, then checks
// that no request failed or took over 200 ms and that the fleet shares
// entries through Redis again within 5 s of the promotion.
func runFailoverDrill(t *testing.T, redisURL string, kill func(context.Context) string, promoted func(context.Context) error) {
	s := fleetSize()
	f := startFleet(t, redisURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := runFleetLoad(ctx, f, s.Rate, s.Catalog)
	// Beside it, requests that need Redis: each user's reputation asked
	// once on each instance, so that every one misses the in-process tier
	// and looks up (and fills) the shared one, on every shard.
	fresh := runFleetPaths(ctx, f, 40, func(n int) (string, string) {
		u := int64(1 + (n/len(f.members))%loadUsers)
		return fmt.Sprintf("/api/users/%d/reputation", u), token(u)
	})
	time.Sleep(2 * time.Second)

	killed := time.Now()
	lost := kill(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := promoted(wctx); err != nil {
		t.Fatal(err)
	}
	promotedAt := time.Now()
	// Shared again: 30 challenge pages in a row (each on a shard of its
	// own draw, so every primary's slots among them), each filled through
	// one instance, are hits on another, whose in-process tier never held
	// them. Each page is asked once.
	const round = 30
	var resumed time.Duration
	inRow := 0
	for id := 1; inRow < round; id++ {
		if id > 200 {
			t.Fatalf("entries not shared through Redis again: the 200 pages ran out %v after the promotion", time.Since(promotedAt))
		}
		a, b := f.members[id%3], f.members[(id+1)%3]
		url := fmt.Sprintf("/api/challenges/%d", id)
		if st, _, _, err := do(http.MethodGet, "http://"+a.addr+url, "", "", nil); err != nil || st/100 == 5 {
			t.Errorf("GET %s on %s: %d %v", url, a.name, st, err)
		}
		_, _, hdr, err := do(http.MethodGet, "http://"+b.addr+url, "", "", nil)
		if err == nil && strings.EqualFold(hdr.Get("X-Cache"), "hit") {
			if inRow++; inRow == round {
				resumed = time.Since(promotedAt)
			}
			// Paced, so that the 200 pages span the 5 s the fleet has to
			// share again on a loaded machine.
			time.Sleep(25 * time.Millisecond)
			continue
		}
		inRow = 0
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	cancel()
	load.wait()
	fresh.wait()
	t.Logf("primary %s killed; replica promoted after %v; %d pages in a row shared again %v after the promotion",
		lost, promotedAt.Sub(killed).Round(time.Millisecond), round, resumed.Round(time.Millisecond))
	for _, l := range []struct {
		name string
		l    *fleetLoad
	}{{"cached catalogue", load}, {"reputations through Redis", fresh}} {
		t.Logf("%s: %d GETs, %d failed %v; p99 %v, max %v; hit rate %.1f%%", l.name, l.l.sent, l.l.failed, l.l.errs,
			l.l.quantile(0.99), l.l.quantile(1), 100*l.l.hitRate())
		if l.l.failed > 0 {
			t.Errorf("%s: %d of %d requests failed across the failover: %v", l.name, l.l.failed, l.l.sent, l.l.errs)
		}
		// The bound, 200 ms, is the full drill's. The short
		// version runs beside the whole suite on two cores, where any
		// request can stall that long (it saw 205–564 ms once): it
		// bounds a request by a second, and still fails one that hung
		// on the dead primary.
		bound := 200 * time.Millisecond
		if !*full {
			bound = time.Second
		}
		if mx := l.l.quantile(1); mx > bound {
			t.Errorf("%s: a request took %v across the failover; want ≤ %v", l.name, mx, bound)
		}
	}
	if resumed > 5*time.Second {
		t.Errorf("entries shared again %v after the promotion; want ≤ 5 s", resumed)
	}
}
