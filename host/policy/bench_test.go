package policy

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Benchmarks of decisions through the Engine and the pool, with the loop
// guard and the watchdog on (they always are). Run with:
//
//	go test ./host/policy -run '^$' -bench . -benchmem

// cpuMeter reports process CPU time per operation as cpu-ns/op: on a
// shared machine wall time per op also counts time spent waiting for a
// core, CPU time does not. It includes the watchdog and the GC.
type cpuMeter struct{ start time.Duration }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) *cpuMeter {
	b.ResetTimer()
	return &cpuMeter{start: cpuTime()}
}

func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(cpuTime()-m.start)/float64(b.N), "cpu-ns/op")
}

func benchEngine(b *testing.B, kind abi.Kind) *Engine {
	b.Helper()
	rt := testRuntime(b)
	// A generous acquire timeout: 64 goroutines share a pool of 8 on a
	// busy 2-core machine, and a fallback would fail the benchmark.
	v := loadGuest(b, rt, "ok", "bench", Spec{Name: "bench-" + kind.String(), Deadline: time.Second, AcquireTimeout: time.Minute})
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	if _, err := e.Activate(kind, v); err != nil {
		b.Fatal(err)
	}
	return e
}

var cacheReq = abi.CacheRequest{Method: "GET", Route: "/api/users/:id/reputation", Path: "/api/users/42/reputation", User: "42"}

func BenchmarkCacheDecision(b *testing.B) {
	benchSerial(b, abi.KindCache, func(ctx context.Context, e *Engine) Outcome {
		_, r := e.Cache(ctx, &cacheReq)
		return r.Outcome
	})
}

// message500 is a 500-character chat message.
var message500 = strings.Repeat("how do I start a conversation at a party ", 13)[:500]

func BenchmarkRouteDecision500(b *testing.B) {
	req := abi.RouteRequest{Message: message500, HistoryTurns: 4, HistoryTokens: 300}
	benchSerial(b, abi.KindRoute, func(ctx context.Context, e *Engine) Outcome {
		_, r := e.Route(ctx, &req)
		return r.Outcome
	})
}

func BenchmarkCompressDecision(b *testing.B) {
	req := abi.CompressRequest{Query: "what did I say about my sister?", BudgetTokens: 1500}
	for i := 0; i < 40; i++ {
		req.Messages = append(req.Messages, abi.Message{ID: "m" + string(rune('a'+i%26)), Role: abi.Role(i % 2), Text: message500[:200], Tokens: 50})
	}
	benchSerial(b, abi.KindCompress, func(ctx context.Context, e *Engine) Outcome {
		_, r := e.Compress(ctx, &req)
		return r.Outcome
	})
}

// benchSerial runs decide on an engine of kind, one call at a time.
func benchSerial(b *testing.B, kind abi.Kind, decide func(context.Context, *Engine) Outcome) {
	e := benchEngine(b, kind)
	ctx := context.Background()
	b.ReportAllocs()
	m := startCPU(b)
	defer m.report(b)
	for b.Loop() {
		if o := decide(ctx, e); o != OutcomeOK {
			b.Fatal(o)
		}
	}
}

// BenchmarkCacheDecisionParallel shows the pool under contention.
func BenchmarkCacheDecisionParallel(b *testing.B) {
	benchParallel(b, abi.KindCache, func(ctx context.Context, e *Engine) Outcome {
		_, r := e.Cache(ctx, &cacheReq)
		return r.Outcome
	})
}

func BenchmarkRouteDecision500Parallel(b *testing.B) {
	req := abi.RouteRequest{Message: message500}
	benchParallel(b, abi.KindRoute, func(ctx context.Context, e *Engine) Outcome {
		_, r := e.Route(ctx, &req)
		return r.Outcome
	})
}

// benchParallel runs decide on an engine of kind from 2 and from 64
// goroutines at once.
func benchParallel(b *testing.B, kind abi.Kind, decide func(context.Context, *Engine) Outcome) {
	for _, par := range []int{2, 64} {
		b.Run("goroutines="+itoa(par), func(b *testing.B) {
			e := benchEngine(b, kind)
			ctx := context.Background()
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism(max(par/gomaxprocs(), 1))
			b.ReportAllocs()
			m := startCPU(b)
			defer m.report(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if o := decide(ctx, e); o != OutcomeOK {
						b.Error(o)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLoopGuard prices the guard: a 35-iteration loop in a module
// compiled as is and with the guard inserted.
func BenchmarkLoopGuard(b *testing.B) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	if err := instantiateInternal(ctx, r); err != nil {
		b.Fatal(err)
	}
	plain := loopModule()
	guarded := loopModule()
	if err := addLoopGuard(guarded, 0, 0, guardOptions{}); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		bin  []byte
	}{{"unguarded", encode(plain)}, {"guarded", encode(guarded)}} {
		b.Run(tc.name, func(b *testing.B) {
			mod, err := r.InstantiateWithConfig(ctx, tc.bin, wazero.NewModuleConfig().WithName(""))
			if err != nil {
				b.Fatal(err)
			}
			defer mod.Close(ctx)
			fn := mod.ExportedFunction("spin")
			budget, _ := mod.ExportedGlobal(stopGlobalName).(api.MutableGlobal)
			stack := []uint64{35}
			m := startCPU(b)
			defer m.report(b)
			for b.Loop() {
				if budget != nil {
					budget.Set(loopBudget(time.Millisecond)) // armed per call, as the host does
				}
				stack[0] = 35
				if err := fn.CallWithStack(ctx, stack); err != nil || api.DecodeI32(stack[0]) != 35 {
					b.Fatal(err, stack[0])
				}
			}
		})
	}
}

// BenchmarkRunawayStop measures how long a call to a guest that never
// returns takes to come back with the fallback: the deadline (2 ms) plus
// the stop latency, reported as overrun-µs.
func BenchmarkRunawayStop(b *testing.B) {
	rt := testRuntime(b)
	v := loadGuest(b, rt, "loop", "", Spec{Name: "runaway", MinInstances: 1, MaxInstances: 2, AcquireTimeout: 5 * time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 1 << 30})
	if _, err := e.Activate(abi.KindRoute, v); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		// Wait, untimed, for the replacement of the stopped instance.
		b.StopTimer()
		for wait := time.Now(); v.Stats().Idle < 1; time.Sleep(time.Millisecond) {
			if time.Since(wait) > 20*time.Second {
				b.Fatalf("no instance came back: %+v", v.Stats())
			}
		}
		b.StartTimer()
		start := time.Now()
		_, r := e.Route(ctx, &abi.RouteRequest{Message: "x"})
		total += time.Since(start)
		if r.Outcome != OutcomeTimeout {
			b.Fatal(r.Outcome)
		}
	}
	b.ReportMetric(float64((total/time.Duration(b.N))-v.Deadline(abi.KindRoute))/1e3, "overrun-µs")
}

// BenchmarkCacheCodecBaseline is the host's share of a cache decision
// without WebAssembly: encode the request, decode a decision.
func BenchmarkCacheCodecBaseline(b *testing.B) {
	dec := abi.AppendCacheDecision(nil, &abi.CacheDecision{Action: abi.CacheLookup, Key: cacheReq.Path, TTLSeconds: 60})
	var buf []byte
	b.ReportAllocs()
	m := startCPU(b)
	defer m.report(b)
	for b.Loop() {
		buf = abi.AppendCacheRequest(buf[:0], &cacheReq)
		var d abi.CacheDecision
		if err := decodeCache(dec, &d, defaultDecisionLimits); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineOverhead is the host's whole share of a decision: a
// route decision through the Engine, the pool, the watchdog protocol and
// the guarded code of a hand-assembled guest that does no work. The
// difference to BenchmarkRouteDecision500 is the Go guest's own cost.
func BenchmarkEngineOverhead(b *testing.B) {
	rt := testRuntime(b)
	v, err := rt.Load(context.Background(), Spec{Name: "echo", Config: []byte("ok"), Deadline: time.Second}, encode(echoRouteModule()))
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	e.Activate(abi.KindRoute, v)
	req := abi.RouteRequest{Message: "hello"}
	ctx := context.Background()
	b.ReportAllocs()
	m := startCPU(b)
	defer m.report(b)
	for b.Loop() {
		if _, r := e.Route(ctx, &req); r.Outcome != OutcomeOK {
			b.Fatal(r.Outcome)
		}
	}
}
