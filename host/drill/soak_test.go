package drill

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakFor is the soak drill's length: `go test ./host/drill -run
// TestDrillSoak -soak 10m -v` (task soak). Without it the suite runs a
// 12 s version.
var soakFor = flag.Duration("soak", 0, "run the soak drill for this long (0: the suite's 12 s version)")

// TestDrillSoak mixes the hostile traffic of the other drills with normal
// traffic and policy swaps against `wingate serve` as its own process,
// for a while, then checks that nothing was left behind:
//
//   - normal traffic: keep-alive clients opened before the rest, sending
//     /healthz and the catalogue, must get no 5xx (and under 1% errors of
//     any kind);
//   - floods of idle connections from other source addresses to 1.5× the
//     server's descriptor limit (2,048), held a few seconds, every 20 s;
//   - rounds of 33 MB bodies (Content-Length, chunked, short) to /healthz,
//     a JSON route and the admin upload without a token (from 127.0.0.5,
//     as the admin guard limits failures per address), every 10 s;
//   - requests with random unknown query parameters and id spellings;
//   - the cache policy activated alternately between two versions through
//     the admin API every 2 s.
//
// Once it ends and its connections are closed, the server's goroutines
// (go_sched_goroutines_goroutines) and open descriptors
// (process_open_fds) must come back to their figures before it.
func TestDrillSoak(t *testing.T) {
	length := 12 * time.Second
	if *soakFor > 0 {
		length = *soakFor
	}
	const noFile = 2048
	p := startProc(t, policyDir(t), "--max-open-files", strconv.Itoa(noFile))
	addr := strings.TrimPrefix(p.base, "http://")
	opsAddr := strings.TrimPrefix(p.ops, "http://")
	h := &host{base: p.base, ops: p.ops}

	// Two versions of the shipped cache policy to swap between.
	ids := pushVariants(t, h, "soak-a", "soak-b")

	// The figures before: after a little traffic, with no client
	// connection open but the scrape's own.
	for range 50 {
		if st, _, _, err := do(http.MethodGet, p.base+"/api/challenges?limit=5", "", "", nil); err != nil || st != http.StatusOK {
			t.Fatalf("warm-up: %d %v", st, err)
		}
	}
	httpClient.CloseIdleConnections()
	adminClient.CloseIdleConnections()
	time.Sleep(time.Second)
	g0, fd0 := soakGauges(t, p)

	ka := startKeepAlive(t, addr, 8, 200)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	every := func(d time.Duration, f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(d)
			defer tick.Stop()
			for i := 0; ; i++ {
				f(i)
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	var (
		floods, floodOpened, floodRefused atomic.Int64
		bodies, bodyErrors                atomic.Int64
		odd, odd5xx                       atomic.Int64
		swaps, swapErrors                 atomic.Int64
		mu                                sync.Mutex
		problems                          []string
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	every(20*time.Second, func(int) {
		wait := startFlood(t, addr, noFile*3/2, 2, 4*time.Second)
		for _, r := range wait() {
			floodOpened.Add(int64(r.Opened))
			floodRefused.Add(int64(r.Refused))
		}
		floods.Add(1)
	})
	every(10*time.Second, func(int) {
		var bw sync.WaitGroup
		for _, tg := range bodyTargets {
			for _, a := range bodyAttacks {
				for range 4 {
					to, from := addr, ""
					if strings.HasPrefix(tg.path, "/admin/") {
						// From an address of its own: the admin guard
						// limits failed attempts per address, and the
						// operator swapping policies is not the attacker.
						to, from = opsAddr, "127.0.0.5"
					}
					bw.Add(1)
					go func() {
						defer bw.Done()
						r := sendBigFrom(from, to, a, tg.method, tg.path)
						bodies.Add(1)
						// A connection refused at the cap during a flood
						// (503, or a reset) is not a body read.
						if r.sent >= bigBody || (len(r.statuses) > 0 && r.statuses[0] >= 500 && r.statuses[0] != http.StatusServiceUnavailable) {
							bodyErrors.Add(1)
							problem("body %s %s (%s): answers %v, %d bytes taken", tg.method, tg.path, a.name, r.statuses, r.sent)
						}
					}()
				}
			}
		}
		bw.Wait()
	})
	every(20*time.Millisecond, func(i int) {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		url := fmt.Sprintf("%s/api/challenges?limit=%d&x%d=%d", p.base, 1+rng.IntN(10), rng.IntN(1000), rng.IntN(1000))
		tok := ""
		if i%2 == 1 {
			user := 1 + rng.IntN(50)
			url = fmt.Sprintf("%s/api/users/%s/reputation?z%d=1", p.base, []string{strconv.Itoa(user), "0" + strconv.Itoa(user), "00" + strconv.Itoa(user)}[rng.IntN(3)], rng.IntN(1000))
			tok = token(int64(user))
		}
		st, _, _, err := do(http.MethodGet, url, tok, "", nil)
		odd.Add(1)
		if err == nil && st >= 500 && st != http.StatusServiceUnavailable {
			odd5xx.Add(1)
			problem("GET %s: %d", url, st)
		}
	})
	every(2*time.Second, func(i int) {
		a, err := admin(http.MethodPost, fmt.Sprintf("%s/admin/policies/%d/activate", p.ops, ids[i%2]))
		swaps.Add(1)
		if err != nil || a.Status != http.StatusOK {
			swapErrors.Add(1)
			problem("activate %d: %d %v (%v)", ids[i%2], a.Status, a.Body, err)
		}
	})

	start := time.Now()
	for time.Since(start) < length {
		time.Sleep(time.Second)
		p.alive(t, "during the soak")
	}
	close(stop)
	wg.Wait()
	reqs, errs := ka.finish()
	ended := time.Now()
	p.alive(t, "after the soak")
	httpClient.CloseIdleConnections()
	adminClient.CloseIdleConnections()

	// Back to the figures before: connections close on the server's side
	// within its timeouts; allow the scrape's connection and a little
	// slack for the runtime's own goroutines.
	var g, fd int
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, fd = soakGauges(t, p)
		if (g <= g0+5 && fd <= fd0+2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	settled := time.Since(ended)

	var kaErr, ka5xx int
	for class, n := range errs {
		kaErr += n
		if strings.HasPrefix(class, "status 5") {
			ka5xx += n
		}
	}
	t.Logf("soak of %v: normal traffic %d requests, %d errors %v", length, reqs, kaErr, errs)
	t.Logf("floods: %d of %d idle connections, %d opened, %d refused at the cap", floods.Load(), noFile*3/2, floodOpened.Load(), floodRefused.Load())
	t.Logf("bodies: %d of 33 MB, %d read or answered 5xx; odd requests: %d, %d answered 5xx; swaps: %d, %d failed",
		bodies.Load(), bodyErrors.Load(), odd.Load(), odd5xx.Load(), swaps.Load(), swapErrors.Load())
	t.Logf("goroutines %d before, %d after; descriptors %d before, %d after (%v after the end)", g0, g, fd0, fd, settled.Round(time.Millisecond))
	for _, s := range problems {
		t.Log(s)
	}
	if ka5xx > 0 || reqs == 0 || float64(kaErr) > 0.01*float64(reqs) {
		t.Errorf("normal traffic: %d errors (%d 5xx) in %d requests; want no 5xx and under 1%%", kaErr, ka5xx, reqs)
	}
	if bodyErrors.Load() > 0 || odd5xx.Load() > 0 || swapErrors.Load() > 0 {
		t.Errorf("%d bodies read, %d odd requests answered 5xx, %d swaps failed; want none", bodyErrors.Load(), odd5xx.Load(), swapErrors.Load())
	}
	if floods.Load() == 0 || floodRefused.Load() == 0 || swaps.Load() < 2 {
		t.Errorf("%d floods (%d refusals), %d swaps: the soak did not do what it says", floods.Load(), floodRefused.Load(), swaps.Load())
	}
	if g > g0+5 || fd > fd0+2 {
		t.Errorf("after the soak: goroutines %d (before %d), descriptors %d (before %d): something was left behind", g, g0, fd, fd0)
	}
}

// soakGauges scrapes the server's goroutines and open descriptors from
// its operators' listener.
func soakGauges(t *testing.T, p *proc) (goroutines, fds int) {
	t.Helper()
	body, err := p.scrape()
	if err != nil {
		t.Fatal(err)
	}
	goroutines, fds = -1, -1
	for _, line := range strings.Split(body, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_sched_goroutines_goroutines":
			goroutines = int(v)
		case "process_open_fds":
			fds = int(v)
		}
	}
	if goroutines < 0 || fds < 0 {
		t.Fatalf("scrape: go_sched_goroutines_goroutines %d, process_open_fds %d: missing", goroutines, fds)
	}
	return goroutines, fds
}
