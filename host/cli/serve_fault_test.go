package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// faultCounts tallies answers during one phase.
type faultCounts struct{ ok, unavailable, slowest atomic.Int64 }

func (c *faultCounts) took(d time.Duration) {
	for {
		old := c.slowest.Load()
		if int64(d) <= old || c.slowest.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// TestDatabaseFaults drives serve's real assembly against PostgreSQL
// through a cuttable proxy while 8 clients read and write: backends are
// killed with pg_terminate_backend, then the "server" stops (connections
// refused), then hangs (connections black-holed), then returns. Every
// answer must be 200/201 or a 503 JSON error within the operation
// timeout (plus slack for a loaded machine); the service must recover by
// itself; and every acknowledged write must survive.
func TestDatabaseFaults(t *testing.T) {
	const opTimeout = time.Second
	// A request may spend opTimeout in the store; the rest is slack for
	// the race detector and a busy shared machine. A hang is far beyond.
	const bound = opTimeout + 3*time.Second

	ctx := context.Background()
	direct, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_fault")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	setup, err := pgstore.Open(ctx, pgstore.Config{URL: direct, OpTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Seed(ctx, pgstore.SeedOptions{Users: 200}); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	du, _ := url.Parse(direct)
	proxy := testkit.StartFaultProxy(t, du.Host)
	pu := *du
	pu.Host = proxy.Addr()
	q := pu.Query()
	q.Set("connect_timeout", "1")
	pu.RawQuery = q.Encode()

	_, base := startHost(t, func(c *app.Config) {
		c.DatabaseURL, c.DBOpTimeout, c.DBAcquireTimeout = pu.String(), opTimeout, 500*time.Millisecond
	})
	waitReady(t, base, 15*time.Second)
	a, _ := auth.New([]byte("serve-test-secret-0123456789"))
	token := func(id int64) string { tok, _ := a.Issue(id, time.Hour); return tok }

	// Writes acknowledged before any fault.
	type ackedCompletion struct {
		user, challenge int64
		id              float64
	}
	var acked []ackedCompletion
	for u := int64(1); u <= 10; u++ {
		st, m := call(t, "PUT", fmt.Sprintf("%s/api/users/%d/location", base, u), token(u),
			fmt.Sprintf(`{"lat": %v, "lon": %v}`, 10+float64(u)/100, 20+float64(u)/100))
		if st != 200 {
			t.Fatalf("PUT location before the fault = %d %v", st, m)
		}
		ch := 100 + u
		st, m = call(t, "POST", fmt.Sprintf("%s/api/challenges/%d/complete", base, ch), token(u), "")
		if st != 201 {
			t.Fatalf("complete before the fault = %d %v", st, m)
		}
		acked = append(acked, ackedCompletion{u, ch, m["id"].(float64)})
	}

	// Load: 8 clients, each owning one user, alternate reads and
	// location writes numbered by sequence; they record the last write
	// acknowledged.
	var phase atomic.Pointer[faultCounts]
	phase.Store(&faultCounts{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	lastAcked := make([]int, 8)
	var failures sync.Map
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := int64(20 + w)
			tok := token(user)
			for seq := 1; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				var method, path, body string
				switch seq % 3 {
				case 0:
					method, path, body = "PUT", fmt.Sprintf("/api/users/%d/location", user), fmt.Sprintf(`{"lat": %.3f, "lon": 1}`, float64(seq)/1000)
				case 1:
					method, path = "GET", fmt.Sprintf("/api/users/%d/reputation", user)
				case 2:
					method, path = "GET", "/api/challenges?limit=5"
				}
				// A request belongs to the phase it was sent in: one sent
				// during the hang and answered after the return is part
				// of the outage.
				c := phase.Load()
				st, code, d, err := timedCall(method, base+path, tok, body)
				c.took(d)
				switch {
				case err != nil:
					failures.Store(fmt.Sprintf("%s %s: %v", method, path, err), true)
				case d > bound:
					failures.Store(fmt.Sprintf("%s %s took %v (bound %v)", method, path, d, bound), true)
				case st == 200 || st == 201:
					c.ok.Add(1)
					if method == "PUT" {
						lastAcked[w] = seq
					}
				case st == 503 && code == "unavailable":
					c.unavailable.Add(1)
				default:
					failures.Store(fmt.Sprintf("%s %s = %d %q", method, path, st, code), true)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	runPhase := func(name string, d time.Duration) *faultCounts {
		c := &faultCounts{}
		phase.Store(c)
		time.Sleep(d)
		t.Logf("%s: %d answered, %d × 503, slowest answer %v", name, c.ok.Load(), c.unavailable.Load(),
			time.Duration(c.slowest.Load()).Round(time.Millisecond))
		return c
	}
	runPhase("healthy", 500*time.Millisecond)

	// 1. Backends killed by the server.
	n, err := pgstore.TerminateBackends(ctx, direct)
	if err != nil || n == 0 {
		t.Fatalf("pg_terminate_backend ended %d backends, err %v", n, err)
	}
	t.Logf("pg_terminate_backend ended %d backends of the pool", n)
	if c := runPhase("after pg_terminate_backend", time.Second); c.ok.Load() == 0 {
		t.Fatal("no request succeeded after the backends were killed: the pool did not reconnect")
	}

	// 2. The server stops: connections refused.
	proxy.SetMode(testkit.ProxyRefuse)
	outage := runPhase("server stopped", 1500*time.Millisecond)
	checkOutage(t, base, token(1), bound)

	// 3. The server hangs: connections accepted, never answered.
	proxy.SetMode(testkit.ProxyBlackhole)
	hung := runPhase("server hung", 2*time.Second)
	checkOutage(t, base, token(1), bound)
	if outage.unavailable.Load()+hung.unavailable.Load() == 0 {
		t.Fatal("no 503 during the outage")
	}

	// 4. The server returns: the service recovers by itself.
	proxy.SetMode(testkit.ProxyForward)
	t0 := time.Now()
	waitReady(t, base, 20*time.Second)
	t.Logf("ready again %v after the database returned", time.Since(t0).Round(time.Millisecond))
	if c := runPhase("recovered", time.Second); c.ok.Load() == 0 || c.unavailable.Load() > 0 {
		t.Fatalf("after recovery: %d ok, %d × 503; want all ok", c.ok.Load(), c.unavailable.Load())
	}
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Error(k); return true })

	// Every acknowledged write is still there.
	for i, c := range acked {
		u := c.user
		st, m := call(t, "GET", fmt.Sprintf("%s/api/users/%d/location", base, u), token(u), "")
		if st != 200 || m["lat"] != 10+float64(u)/100 || m["lon"] != 20+float64(u)/100 {
			t.Errorf("location of user %d = %d %v", u, st, m)
		}
		st, m = call(t, "POST", fmt.Sprintf("%s/api/challenges/%d/complete", base, c.challenge), token(u), "")
		if st != 200 || m["created"] != false || m["id"] != c.id {
			t.Errorf("completion %d of user %d: repeat = %d %v; want the acknowledged completion %v", i, u, st, m, c.id)
		}
	}
	for w := range 8 {
		user := int64(20 + w)
		st, m := call(t, "GET", fmt.Sprintf("%s/api/users/%d/location", base, user), token(user), "")
		if lastAcked[w] == 0 {
			continue
		}
		got := int(math.Round(m["lat"].(float64) * 1000))
		if st != 200 || got < lastAcked[w] {
			t.Errorf("user %d: stored write #%d, but #%d was acknowledged", user, got, lastAcked[w])
		}
	}
}

// checkOutage asserts the answers while the database is away: /healthz
// 200, /readyz 503, an API call 503 JSON within bound.
func checkOutage(t *testing.T, base, tok string, bound time.Duration) {
	t.Helper()
	if st, _ := call(t, "GET", base+"/healthz", "", ""); st != 200 {
		t.Errorf("/healthz = %d during the outage, want 200", st)
	}
	if st, m := call(t, "GET", base+"/readyz", "", ""); st != 503 {
		t.Errorf("/readyz = %d %v during the outage, want 503", st, m)
	}
	st, code, d, err := timedCall("GET", base+"/api/users/1/location", tok, "")
	if err != nil || st != 503 || code != "unavailable" || d > bound {
		t.Errorf("GET location during the outage = %d %q in %v (err %v); want 503 unavailable within %v", st, code, d, err, bound)
	}
}

// timedCall sends one request and returns status, error code and time.
func timedCall(method, url, tok, body string) (int, string, time.Duration, error) {
	t0 := time.Now()
	req, err := newRequest(method, url, tok, body)
	if err != nil {
		return 0, "", 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", time.Since(t0), err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	d := time.Since(t0)
	var m struct {
		Error *struct{ Code string } `json:"error"`
	}
	if err := jsonUnmarshal(raw, &m); err != nil {
		return resp.StatusCode, "", d, fmt.Errorf("body is not JSON: %q", raw)
	}
	if m.Error != nil {
		return resp.StatusCode, m.Error.Code, d, nil
	}
	if resp.StatusCode >= 400 {
		return resp.StatusCode, "", d, errors.New("error status without an error body")
	}
	return resp.StatusCode, "", d, nil
}
