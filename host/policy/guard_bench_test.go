package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/guests"
	"github.com/wingman-app/wingate/sdk/abi"
)

// repositoryPolicy returns the module and configuration of kind from
// the repository's policies directory (go generate ./policies).
func repositoryPolicy(tb testing.TB, kind abi.Kind) ([]byte, []byte) {
	tb.Helper()
	dir := filepath.Join("..", "..", "policies")
	raw, err := os.ReadFile(filepath.Join(dir, PoliciesFileName))
	if err != nil {
		tb.Fatalf("%v (the repository's policies are needed: go generate ./policies)", err)
	}
	var file struct {
		Policies []struct {
			Kind   string          `json:"kind"`
			File   string          `json:"file"`
			Config json.RawMessage `json:"config"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		tb.Fatal(err)
	}
	for _, p := range file.Policies {
		if p.Kind == kind.String() {
			wasm, err := os.ReadFile(filepath.Join(dir, p.File))
			if err != nil {
				tb.Fatalf("%v (run go generate ./policies)", err)
			}
			return wasm, p.Config
		}
	}
	tb.Fatalf("no %s policy in %s", kind, dir)
	return nil, nil
}

// BenchmarkGuard prices the interruption on the default policies'
// decisions, in one run: guard=loops-only is the guard before call sites
// were checked (loop headers only, bulk memory instructions left alone);
// guard=loops+calls is the guard every module gets now (loop headers,
// call sites with the call-depth count, chunked memory.fill and
// memory.copy). Compare the two lines of each kind:
//
//	go test ./host/policy -run '^$' -bench 'BenchmarkGuard' -count 6
func BenchmarkGuard(b *testing.B) {
	type tc struct {
		kind abi.Kind
		call func(e *Engine) Outcome
	}
	ctx := context.Background()
	compressReq := abi.CompressRequest{Query: "what did I say about my sister?", BudgetTokens: 1500}
	for i := 0; i < 40; i++ {
		compressReq.Messages = append(compressReq.Messages, abi.Message{ID: "m" + itoa(i), Role: abi.Role(i % 2), Text: message500[:200], Tokens: 50})
	}
	for _, c := range []tc{
		{abi.KindCache, func(e *Engine) Outcome { _, r := e.Cache(ctx, &cacheReq); return r.Outcome }},
		{abi.KindRoute, func(e *Engine) Outcome {
			_, r := e.Route(ctx, &abi.RouteRequest{Message: message500, HistoryTurns: 4, HistoryTokens: 300})
			return r.Outcome
		}},
		{abi.KindCompress, func(e *Engine) Outcome { _, r := e.Compress(ctx, &compressReq); return r.Outcome }},
	} {
		wasm, cfg := repositoryPolicy(b, c.kind)
		for _, g := range []struct {
			name      string
			loopsOnly bool
		}{{"loops-only", true}, {"loops+calls", false}} {
			b.Run(c.kind.String()+"/guard="+g.name, func(b *testing.B) {
				rt := newRuntime(b, Options{Logger: discardLogger(), loopsOnly: g.loopsOnly})
				v, err := rt.Load(ctx, Spec{Name: c.kind.String(), Config: cfg, MinInstances: 1, Deadline: time.Second, AcquireTimeout: time.Minute}, wasm)
				if err != nil {
					b.Fatal(err)
				}
				defer v.Close()
				e := NewEngine(EngineOptions{Logger: discardLogger()})
				if _, err := e.Activate(c.kind, v); err != nil {
					b.Fatal(err)
				}
				c.call(e) // warm
				b.ReportAllocs()
				m := startCPU(b)
				defer m.report(b)
				refills := rt.refills.Load()
				for b.Loop() {
					if o := c.call(e); o != OutcomeOK {
						b.Fatal(o)
					}
				}
				// Budget slices after the first, per decision: the
				// refill's cost is on a decision only when this is not 0.
				b.ReportMetric(float64(rt.refills.Load()-refills)/float64(b.N), "refills/op")
			})
		}
	}
}

// BenchmarkGuardPaired is BenchmarkGuard for the cache kind with the two
// guards interleaved: every iteration makes one decision through each,
// alternating which goes first, so that a busy machine slows both alike.
// It reports each one's median time per decision and the slowdown of the
// current guard against the loops-only one, in percent, from the
// medians: on a shared machine the mean follows whoever else runs.
func BenchmarkGuardPaired(b *testing.B) {
	ctx := context.Background()
	wasm, cfg := repositoryPolicy(b, abi.KindCache)
	var rts []*Runtime
	engine := func(loopsOnly bool) *Engine {
		rt := newRuntime(b, Options{Logger: discardLogger(), loopsOnly: loopsOnly})
		rts = append(rts, rt)
		v, err := rt.Load(ctx, Spec{Name: "cache", Config: cfg, MinInstances: 1, Deadline: time.Second, AcquireTimeout: time.Minute}, wasm)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(v.Close)
		e := NewEngine(EngineOptions{Logger: discardLogger()})
		if _, err := e.Activate(abi.KindCache, v); err != nil {
			b.Fatal(err)
		}
		return e
	}
	engines := [2]*Engine{engine(true), engine(false)}
	var took [2][]time.Duration
	var d abi.CacheDecision
	buf := make([]byte, 0, 256)
	call := func(i int) {
		start := time.Now()
		var r Result
		buf, r = engines[i].CacheInto(ctx, &cacheReq, &d, buf[:0])
		took[i] = append(took[i], time.Since(start))
		if r.Outcome != OutcomeOK {
			b.Fatal(r.Outcome)
		}
	}
	call(0)
	call(1)
	took = [2][]time.Duration{make([]time.Duration, 0, 1<<16), make([]time.Duration, 0, 1<<16)}
	n := 0
	refills := rts[1].refills.Load()
	for b.Loop() {
		first := n & 1
		call(first)
		call(1 - first)
		n++
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2])
	}
	p0, p1 := median(took[0]), median(took[1])
	b.ReportMetric(p0, "loops-only-p50-ns")
	b.ReportMetric(p1, "loops+calls-p50-ns")
	b.ReportMetric(100*(p1/p0-1), "slowdown-%")
	b.ReportMetric(float64(rts[1].refills.Load()-refills)/float64(n), "refills/op")
}

// BenchmarkDeepRecursion prices unbounded recursion ending at the call
// depth limit (depth=limit, DefaultMaxCallDepth) against ending at
// wazero's own stack limit (depth=wazero: the count set out of reach),
// where wazero grows its stack, a Go slice, by doubling to about 100 MB.
// B/op shows the stack's allocations; the time per op includes starting
// the instance that replaces the trapped one.
func BenchmarkDeepRecursion(b *testing.B) {
	wasm := hostileWasm(b, "deep-recursion")
	for _, c := range []struct {
		name  string
		depth uint32
	}{{"limit", 0}, {"wazero", 1 << 30}} {
		b.Run("depth="+c.name, func(b *testing.B) {
			rt := newRuntime(b, Options{Logger: discardLogger(), MaxCallDepth: c.depth, MaxDeadline: time.Minute})
			v, err := rt.Load(context.Background(), Spec{Name: "rec", MinInstances: 1, MaxInstances: 1, Deadline: time.Minute, AcquireTimeout: time.Minute}, wasm)
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			b.ReportAllocs()
			m := startCPU(b)
			defer m.report(b)
			for b.Loop() {
				if _, err := v.Cache(context.Background(), &cacheReq); !errors.Is(err, ErrTrap) {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(v.Stats().CallTime.Max)/1e6, "slowest-ms")
		})
	}
}

// BenchmarkHostile calls every hostile module of the catalogue that
// loads (host/internal/guests) with a 2 ms deadline and reports the
// slowest call's own duration (the host's histogram) and the mean, in
// milliseconds, against twice the deadline plus a millisecond (5 ms).
// Waiting for the replacement of a discarded instance is not timed.
//
//	go test ./host/policy -run '^$' -bench BenchmarkHostile -benchtime 100x
func BenchmarkHostile(b *testing.B) {
	rt := testRuntime(b)
	for _, m := range hostile() {
		if m.Want == guests.RefusedAtLoad {
			continue
		}
		b.Run(m.Name, func(b *testing.B) {
			v, err := rt.Load(context.Background(), Spec{Name: m.Name, MinInstances: 1, MaxInstances: 2, Deadline: 2 * time.Millisecond, AcquireTimeout: time.Minute}, m.Wasm)
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 1 << 30})
			e.Activate(abi.KindCache, v)
			for b.Loop() {
				b.StopTimer()
				for wait := time.Now(); v.Stats().Idle < 1; time.Sleep(100 * time.Microsecond) {
					if time.Since(wait) > 20*time.Second {
						b.Fatalf("no instance came back: %+v", v.Stats())
					}
				}
				b.StartTimer()
				e.Cache(context.Background(), &cacheReq)
			}
			s := v.Stats()
			b.ReportMetric(float64(s.CallTime.Max)/1e6, "max-ms")
			b.ReportMetric(float64(s.CallTime.Sum)/float64(max(s.Calls, 1))/1e6, "mean-ms")
		})
	}
}
