package app

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/server"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCachedHitAssembly compares a cached hit through the real
// assembly (the rollout manager's decider, with shadowing and quarantine,
// as `wingate serve` runs) with the same server whose cache decisions come
// from the bare policy engine, as the cache benchmarks of package server
// measured before. Everything else is shared: store, token authority,
// cache, metrics. Each sub-benchmark runs 5 alternating rounds of b.N hits
// per side and reports the median CPU time per hit of each side and their
// ratio (assembly / engine): run it with a fixed count, e.g.
//
//	go test ./host/app -run '^$' -bench CachedHitAssembly -benchtime 200000x
func BenchmarkCachedHitAssembly(b *testing.B) {
	a := servedApp(b)
	deps := a.deps
	deps.CachePolicy = a.engine
	engine := server.New(server.DefaultConfig(), deps).App().Handler()
	sides := []struct {
		name string
		h    fasthttp.RequestHandler
	}{{"engine", engine}, {"assembly", a.Handler()}}
	for _, tc := range []struct {
		name, path string
		user       int64
	}{{"catalogue", "/api/challenges", 0}, {"reputation", "/api/users/7/reputation", 7}} {
		b.Run(tc.name, func(b *testing.B) {
			rcs := make([]*fasthttp.RequestCtx, len(sides))
			for i, s := range sides {
				rcs[i] = hitRequest(b, tc.path, tc.user)
				serveHit(s.h, rcs[i])
				if st, x := serveHit(s.h, rcs[i]); st != 200 || string(x) != "HIT" {
					b.Fatalf("%s %s: %d X-Cache %q, want 200 HIT", s.name, tc.path, st, x)
				}
			}
			const rounds = 5
			per := make([][]float64, len(sides))
			b.ReportAllocs()
			for r := range rounds {
				for k := range sides {
					i := (k + r) % len(sides) // alternate which side goes first
					h, rc := sides[i].h, rcs[i]
					c0 := cpuTime(b)
					for range b.N {
						rc.Response.Reset()
						h(rc)
					}
					per[i] = append(per[i], float64(cpuTime(b)-c0)/float64(b.N))
				}
			}
			med := make([]float64, len(sides))
			for i := range sides {
				slices.Sort(per[i])
				med[i] = per[i][rounds/2]
				b.ReportMetric(med[i], sides[i].name+"-cpu-ns/op")
			}
			b.ReportMetric(med[1]/med[0], "assembly/engine")
			if b.N >= 10000 {
				b.Logf("%s: CPU ns per hit, 5 rounds: engine %v, assembly %v", tc.name, fmtRounds(per[0]), fmtRounds(per[1]))
			}
		})
	}
}

func fmtRounds(v []float64) string {
	s := ""
	for _, x := range v {
		s += fmt.Sprintf(" %.0f", x)
	}
	return "[" + s[1:] + "]"
}
