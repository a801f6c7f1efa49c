package server

import (
	"bytes"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/policy"
)

// hitVariants are the deciders the throughput comparison runs with: the
// real Engine with plugins/cache, and an in-process Go decider.
func hitVariants() []struct {
	name string
	dec  func(testing.TB) policy.Decider
} {
	return []struct {
		name string
		dec  func(testing.TB) policy.Decider
	}{
		{"engine", func(tb testing.TB) policy.Decider { return cachePluginEngine(tb) }},
		{"go-policy", func(testing.TB) policy.Decider { return &fakeCachePolicy{} }},
	}
}

// BenchmarkCacheHitThroughput compares, in one run over real listeners
// with 100 keep-alive connections, a bare Fiber handler returning a 1 KB
// body from memory with the cached catalogue endpoint on in-process hits
// (authentication, policy decision, key, lookup, X-Cache and Age
// included). b.N requests go to each side, in two alternating rounds.
//
//	go test ./host/server -run '^$' -bench CacheHitThroughput -benchtime 200000x
func BenchmarkCacheHitThroughput(b *testing.B) {
	for _, v := range hitVariants() {
		b.Run(v.name, func(b *testing.B) {
			w := newWingmanApp(b, cache.Config{}, v.dec(b))
			cached := w.serve(b)
			bare := bareApp(b, wingmanBody("challenges", "", ""))
			req := getReq("/api/challenges", 1)
			reqFor := func(int) []byte { return req }
			if st, err := runLoad(cached, 1, 2, reqFor); err != nil || st.XCache["HIT"] != 1 {
				b.Fatalf("warm-up: %v %v", st.XCache, err)
			}
			b.ResetTimer()
			var bs, cs []loadStats
			for range 2 {
				for _, side := range []struct {
					addr string
					out  *[]loadStats
				}{{bare, &bs}, {cached, &cs}} {
					st, err := runLoad(side.addr, 100, max(b.N/2, 1000), reqFor)
					if err != nil {
						b.Fatal(err)
					}
					if st.Status[200] != st.Requests {
						b.Fatalf("non-200 answers: %v", st.Status)
					}
					*side.out = append(*side.out, st)
				}
			}
			b.StopTimer()
			bareSt, cach := mergeLoad(bs), mergeLoad(cs)
			// Policy calls that overrun their deadline fall back to a
			// bypass: tolerated, reported.
			if float64(cach.XCache["HIT"]) < 0.999*float64(cach.Requests) {
				b.Fatalf("cached requests were not hits: %v", cach.XCache)
			}
			b.ReportMetric(float64(cach.Requests-cach.XCache["HIT"]), "not_hits")
			b.ReportMetric(bareSt.RPS(), "bare_req/s")
			b.ReportMetric(cach.RPS(), "cached_req/s")
			b.ReportMetric(cach.RPS()/bareSt.RPS(), "ratio")
			b.ReportMetric(ms(bareSt.Pct(0.99)), "bare_p99_ms")
			b.ReportMetric(ms(cach.Pct(0.99)), "cached_p99_ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mergeLoad(runs []loadStats) loadStats {
	out := loadStats{Status: map[int]int{}, XCache: map[string]int{}}
	for _, r := range runs {
		out.Requests += r.Requests
		out.Elapsed += r.Elapsed
		out.Lat = append(out.Lat, r.Lat...)
		for k, v := range r.Status {
			out.Status[k] += v
		}
		for k, v := range r.XCache {
			out.XCache[k] += v
		}
	}
	sortDurations(out.Lat)
	return out
}

var (
	wrkCount = regexp.MustCompile(`([0-9]+) requests in`)
	wrkRPS   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99   = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
)

// BenchmarkCacheHitThroughputWrk is the same comparison driven by wrk (2
// threads, 100 connections, three alternating rounds of 3 s per side),
// once whatever -benchtime says; it needs wrk (apt-get install wrk):
//
//	go test ./host/server -run '^$' -bench CacheHitThroughputWrk -benchtime 1x
func BenchmarkCacheHitThroughputWrk(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk is not installed (apt-get install wrk)")
	}
	for _, v := range hitVariants() {
		b.Run(v.name, func(b *testing.B) {
			t := b
			w := newWingmanApp(t, cache.Config{}, v.dec(t))
			cached := w.serve(t)
			bare := bareApp(t, wingmanBody("challenges", "", ""))
			run := func(addr string) (float64, float64, time.Duration) {
				cpu0 := processCPU()
				out, err := exec.Command(wrk, "-t2", "-c100", "-d3s", "--latency",
					"-H", "Authorization: Bearer u1", "http://"+addr+"/api/challenges").CombinedOutput()
				if err != nil {
					t.Fatalf("wrk: %v\n%s", err, out)
				}
				m, p := wrkRPS.FindSubmatch(out), wrkP99.FindSubmatch(out)
				if m == nil || p == nil || bytes.Contains(out, []byte("Non-2xx")) {
					t.Fatalf("wrk output:\n%s", out)
				}
				cpu := processCPU() - cpu0
				n := wrkCount.FindSubmatch(out)
				if n == nil {
					t.Fatalf("wrk output:\n%s", out)
				}
				count, _ := strconv.Atoi(string(n[1]))
				rps, _ := strconv.ParseFloat(string(m[1]), 64)
				p99, _ := strconv.ParseFloat(string(p[1]), 64)
				switch string(p[2]) {
				case "us":
					p99 /= 1000
				case "s":
					p99 *= 1000
				}
				return rps, p99, cpu / time.Duration(max(count, 1))
			}
			// Alternating rounds, so that a change in the machine's load
			// falls on both sides; throughput is the mean over rounds, p99
			// the worst round's.
			var bRPS, bP99, cRPS, cP99 float64
			var bCPU, cCPU time.Duration
			const rounds = 3
			for range rounds {
				r, p, c := run(bare)
				bRPS, bP99, bCPU = bRPS+r/rounds, max(bP99, p), bCPU+c/rounds
				r, p, c = run(cached)
				cRPS, cP99, cCPU = cRPS+r/rounds, max(cP99, p), cCPU+c/rounds
			}
			t.Logf("wrk -t2 -c100, %d alternating rounds of 3 s: bare %.0f req/s p99 %.2f ms; cached hits (%s) %.0f req/s p99 %.2f ms; ratio %.2f",
				rounds, bRPS, bP99, v.name, cRPS, cP99, cRPS/bRPS)
			t.Logf("server CPU per request: bare %v, cached hits (%s) %v; capacity ratio (bare CPU / cached CPU) %.2f",
				bCPU, v.name, cCPU, float64(bCPU)/float64(cCPU))
			if cRPS/bRPS < 0.70 || cP99 > 5 {
				t.Logf("below the target: ratio %.2f (want ≥ 0.70), p99 %.2f ms (want ≤ 5)", cRPS/bRPS, cP99)
			}
			b.ReportMetric(cRPS/bRPS, "ratio")
			b.ReportMetric(bP99, "bare-p99-ms")
			b.ReportMetric(cP99, "cached-p99-ms")
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
