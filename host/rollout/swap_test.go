package rollout_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/server"
	"github.com/wingman-app/wingate/host/store/memstore"
	"github.com/wingman-app/wingate/sdk/abi"
)

// deadlineMS is the cache policy's per-call deadline in these tests: the
// shipped policies.json's 10 ms, longer under the race detector.
// swapGap is the pause between two activations of the swap scenario: ten
// a second, far more than any roll-out. Back to back (an activation takes
// about 7 ms here, so some 35 a second on a 2-core machine also serving
// 1,000 req/s) the swap phase's p99 is 1.6-6x the steady one's.
var swapGap = 100 * time.Millisecond

var deadlineMS = map[bool]float64{false: 10, true: 200}[raceEnabled]

// swapReport are the figures of one hot-swap run.
type swapReport struct {
	Requests, Failed, Unattributed int64
	// Fallbacks are responses whose (attributed) decision was the
	// fail-open one, e.g. a call past its deadline on a starved machine.
	Fallbacks                int64
	PerVersion               map[string]int64
	Rate                     float64 // requests per second over the run
	SteadyP50, SteadyP99     time.Duration
	SwapP50, SwapP99         time.Duration
	SteadyP90, SwapP90       time.Duration
	SwapWindow               time.Duration
	Activations              int
	ActivateP50, ActivateMax time.Duration
	GCSteady, GCSwaps        uint32 // garbage collections in each phase
	OldClosed                int
	HeapBefore, HeapAfter    uint64
	FirstFailure             string
}

// apiStack is one host: a manager, the response cache, the API and the
// admin API on a loopback listener.
type apiStack struct {
	mgr  *rollout.Manager
	srv  *server.Server
	addr string
}

func newAPIStack(tb testing.TB, mgr *rollout.Manager, cc *cache.Cache) *apiStack {
	tb.Helper()
	if cc == nil {
		var err error
		if cc, err = cache.New(cache.Config{}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(cc.Close)
	}
	srv := server.New(server.DefaultConfig(), server.Deps{Store: memstore.Demo(20), Cache: cc,
		Policies: mgr.Decider(), Rollout: mgr, AdminToken: adminToken})
	ln := listen(tb)
	go srv.ServeOps(ln) // the operators' listener: the API and /admin
	s := &apiStack{mgr: mgr, srv: srv, addr: ln.Addr().String()}
	tb.Cleanup(func() { s.shutdown() })
	return s
}

func (s *apiStack) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// runSwapLoad loads the catalogue endpoint at rate requests per second
// from workers connections, measures a steady phase, then activates two
// versions of the cache policy alternately swaps times under the same
// load, checking every response.
func runSwapLoad(tb testing.TB, rate, workers, swaps int, steady time.Duration) swapReport {
	ctx := context.Background()
	rt := newRuntime(tb)
	mgr := newManager(tb, rt, rollout.Config{RollbackThreshold: -1})
	st := newAPIStack(tb, mgr, nil)
	a, err := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "cache-A", Wasm: versionWasm(tb, "A"), Config: cacheConfig(1800), DeadlineMS: deadlineMS})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "cache-B", Wasm: versionWasm(tb, "B"), Config: cacheConfig(1799), DeadlineMS: deadlineMS})
	if err != nil {
		tb.Fatal(err)
	}
	// Both modules are compiled once before measuring (as after their
	// first activation in production).
	for _, id := range []int64{b.ID, a.ID} {
		if _, err := mgr.Activate(ctx, id); err != nil {
			tb.Fatal(err)
		}
	}
	want := map[string]bool{"cache-A@" + a.Short(): true, "cache-B@" + b.Short(): true}

	rep := swapReport{PerVersion: map[string]int64{}}
	var mu sync.Mutex
	var steadyLat, swapLat []time.Duration
	var phase atomic.Int32 // 0 warm-up, 1 steady, 2 swaps, 3 after
	var requests, failed, unattributed, fallbacks atomic.Int64
	stop := make(chan struct{})
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + st.addr + "/api/challenges"
	interval := time.Duration(workers) * time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int64{}
			var ls, lw []time.Duration
			next := start.Add(time.Duration(w) * interval / time.Duration(workers))
			for {
				if d := time.Until(next); d > 0 {
					select {
					case <-stop:
						goto done
					case <-time.After(d):
					}
				} else {
					select {
					case <-stop:
						goto done
					default:
					}
				}
				next = next.Add(interval)
				{
					ph := phase.Load()
					t0 := time.Now()
					resp, err := client.Get(url)
					var ver, outcome string
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						ver, outcome = resp.Header.Get("X-Policy-Version"), resp.Header.Get("X-Policy-Outcome")
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					lat := time.Since(t0)
					requests.Add(1)
					switch {
					case err != nil:
						if failed.Add(1) == 1 {
							mu.Lock()
							rep.FirstFailure = err.Error()
							mu.Unlock()
						}
					case want[ver] && outcome != "":
						fallbacks.Add(1)
						local[ver]++
					case !want[ver]:
						if unattributed.Add(1) == 1 {
							mu.Lock()
							rep.FirstFailure = fmt.Sprintf("X-Policy-Version %q, X-Policy-Outcome %q", ver, outcome)
							mu.Unlock()
						}
					default:
						local[ver]++
					}
					switch ph {
					case 1:
						ls = append(ls, lat)
					case 2:
						lw = append(lw, lat)
					}
				}
			}
		done:
			mu.Lock()
			for k, v := range local {
				rep.PerVersion[k] += v
			}
			steadyLat = append(steadyLat, ls...)
			swapLat = append(swapLat, lw...)
			mu.Unlock()
		}()
	}
	time.Sleep(300 * time.Millisecond)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	rep.HeapBefore = ms.HeapInuse
	gc0 := ms.NumGC
	phase.Store(1)
	time.Sleep(steady)
	runtime.ReadMemStats(&ms)
	gc1 := ms.NumGC
	phase.Store(2)
	swapStart := time.Now()
	var old []*policy.Version
	var took []time.Duration
	for i := range swaps {
		id := b.ID
		if i%2 == 1 {
			id = a.ID
		}
		prev := mgr.Engine().Active(abi.KindCache)
		t0 := time.Now()
		_, err := mgr.Activate(ctx, id)
		took = append(took, time.Since(t0))
		if err != nil {
			tb.Errorf("activation %d: %v", i, err)
			continue
		}
		old = append(old, prev)
		rep.Activations++
		time.Sleep(swapGap)
	}
	rep.SwapWindow = time.Since(swapStart)
	phase.Store(3)
	runtime.ReadMemStats(&ms)
	rep.GCSteady, rep.GCSwaps = gc1-gc0, ms.NumGC-gc1
	rep.ActivateP50, rep.ActivateMax = pct(took, 0.5), pct(took, 1)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	rep.Requests, rep.Failed, rep.Unattributed, rep.Fallbacks = requests.Load(), failed.Load(), unattributed.Load(), fallbacks.Load()
	rep.Rate = float64(rep.Requests) / elapsed.Seconds()
	rep.SteadyP50, rep.SteadyP99 = pct(steadyLat, 0.50), pct(steadyLat, 0.99)
	rep.SwapP50, rep.SwapP99 = pct(swapLat, 0.50), pct(swapLat, 0.99)
	rep.SteadyP90, rep.SwapP90 = pct(steadyLat, 0.90), pct(swapLat, 0.90)
	// Every replaced version drains and is closed; only the active
	// version's instances stay alive.
	for _, v := range old {
		select {
		case <-v.Done():
			rep.OldClosed++
		case <-time.After(10 * time.Second):
		}
	}
	active := mgr.Engine().Active(abi.KindCache)
	eventually(tb, 10*time.Second, "only the active version's instances alive", func() bool {
		return rt.Instances() == active.Stats().Instances
	})
	runtime.GC()
	runtime.ReadMemStats(&ms)
	rep.HeapAfter = ms.HeapInuse
	return rep
}

func logSwapReport(tb testing.TB, r swapReport) {
	tb.Logf("requests %d at %.0f req/s, failed %d, unattributed %d, fallback decisions %d, by version %v",
		r.Requests, r.Rate, r.Failed, r.Unattributed, r.Fallbacks, r.PerVersion)
	tb.Logf("steady p50 %v p99 %v; during %d activations (%v) p50 %v p99 %v; p99 ratio %.2f",
		r.SteadyP50, r.SteadyP99, r.Activations, r.SwapWindow.Round(time.Millisecond), r.SwapP50, r.SwapP99,
		float64(r.SwapP99)/float64(max(r.SteadyP99, 1)))
	tb.Logf("p90 steady %v, during swaps %v; an activation took %v (median), %v at most; garbage collections: %d steady, %d during the swaps",
		r.SteadyP90, r.SwapP90, r.ActivateP50.Round(10*time.Microsecond), r.ActivateMax.Round(10*time.Microsecond), r.GCSteady, r.GCSwaps)
	tb.Logf("old versions closed %d of %d; heap in use %.1f MiB before, %.1f MiB after",
		r.OldClosed, r.Activations, float64(r.HeapBefore)/(1<<20), float64(r.HeapAfter)/(1<<20))
}

// TestHotSwapUnderLoad: 20 activations alternating two versions of the
// cache policy under 1,000 req/s lose no request, every response names
// the one version that decided it, and every replaced version is closed.
// Latency figures are logged; BenchmarkHotSwapUnderLoad reports them.
func TestHotSwapUnderLoad(t *testing.T) {
	rate, swaps, steady := 1000, 20, 2*time.Second
	if raceEnabled {
		rate, swaps, steady = 200, 6, time.Second
	}
	r := runSwapLoad(t, rate, 8, swaps, steady)
	logSwapReport(t, r)
	if r.Failed != 0 || r.Unattributed != 0 {
		t.Fatalf("%d failed and %d unattributed responses; first: %s", r.Failed, r.Unattributed, r.FirstFailure)
	}
	if r.Activations != swaps || r.OldClosed != swaps {
		t.Fatalf("%d activations, %d old versions closed; want %d and %d", r.Activations, r.OldClosed, swaps, swaps)
	}
	if len(r.PerVersion) != 2 {
		t.Fatalf("responses by version %v: want both versions", r.PerVersion)
	}
}

// BenchmarkHotSwapUnderLoad runs the hot-swap scenario once per iteration
// and reports its figures: p99 latency of the steady phase and of the
// swap phase, and their ratio.
func BenchmarkHotSwapUnderLoad(b *testing.B) {
	for b.Loop() {
		r := runSwapLoad(b, 1000, 8, 20, 3*time.Second)
		logSwapReport(b, r)
		if r.Failed != 0 || r.Unattributed != 0 {
			b.Fatalf("%d failed, %d unattributed: %s", r.Failed, r.Unattributed, r.FirstFailure)
		}
		b.ReportMetric(r.Rate, "req/s")
		b.ReportMetric(float64(r.SteadyP99.Microseconds()), "steady-p99-µs")
		b.ReportMetric(float64(r.SwapP99.Microseconds()), "swap-p99-µs")
		b.ReportMetric(float64(r.SwapP99)/float64(max(r.SteadyP99, 1)), "p99-ratio")
	}
}
