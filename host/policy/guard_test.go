package policy

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wabin/wasm"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wingman-app/wingate/host/internal/guests"
	"github.com/wingman-app/wingate/host/internal/wasmcode"
	"github.com/wingman-app/wingate/sdk/abi"
)

// hostile is the catalogue, built once: building it allocates some
// 60 MB, and a garbage collection that starts while a test's guest spins
// waits for the guest (see TestRunawayDuringGarbageCollection).
var hostile = sync.OnceValue(guests.Hostile)

// hostileWasm returns a module of the hostile catalogue.
func hostileWasm(tb testing.TB, name string) []byte {
	tb.Helper()
	for _, m := range hostile() {
		if m.Name == name {
			return m.Wasm
		}
	}
	tb.Fatalf("no hostile module %s", name)
	return nil
}

// TestLateReturnIsTimeout: a call that outlives its deadline is a
// timeout even when the guest returns by itself (here the watchdog never
// runs in time and the loop budget is larger than the loop).
func TestLateReturnIsTimeout(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { testLateReturnIsTimeout(t, tier.opts) })
	}
}

func testLateReturnIsTimeout(t *testing.T, opts Options) {
	opts.Logger, opts.WatchdogTick = discardLogger(), time.Hour
	rt := newRuntime(t, opts)
	m := abiModule(0)
	m.CodeSection[1].Body = body(i32const(1 << 1)) // cache
	// decide: a counted loop of 1.5 million iterations (the budget of a
	// 1 ms deadline is 2 million), then the error payload.
	m.CodeSection[4] = &wasm.Code{LocalTypes: []wasm.ValueType{i32}, Body: body(
		[]byte{0x03, 0x40, 0x20, 0x02, 0x41, 0x01, 0x6a, 0x22, 0x02, 0x41, 0xe0, 0xc6, 0xdb, 0x00, 0x48, 0x0d, 0x00, 0x0b},
		wasmcode.AppendSLEB([]byte{0x42}, int64(16)<<32|2))}
	v, err := rt.Load(context.Background(), Spec{Name: "late", MinInstances: 1, Deadline: 50 * time.Microsecond}, encode(m))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 3})
	e.Activate(abi.KindCache, v)
	for range 3 {
		if _, r := e.Cache(context.Background(), &cacheReq); r.Outcome != OutcomeTimeout {
			t.Fatalf("outcome %v after %v against a deadline of 50µs, want timeout", r.Outcome, r.Duration)
		}
	}
	if s := v.Stats(); s.Timeouts != 3 || rt.halted.Load() != 0 {
		t.Errorf("timeouts %d (want 3), halted by the watchdog %d (want 0)", s.Timeouts, rt.halted.Load())
	}
	if l := e.List(); !l[0].Quarantined {
		t.Error("three late returns in a row did not quarantine")
	}
}

// TestStartSectionRunsGuarded: a start section runs under its own
// deadline with the guard armed: a finite loop in it works (with the
// budget unarmed it would trap at its first iteration), a never-ending
// one is refused after Options.StartTimeout.
func TestStartSectionRunsGuarded(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { testStartSectionRunsGuarded(t, tier.opts) })
	}
}

func testStartSectionRunsGuarded(t *testing.T, opts Options) {
	opts.Logger, opts.StartTimeout = discardLogger(), 100*time.Millisecond
	rt := newRuntime(t, opts)
	m := abiModule(0)
	// start: 1,000 iterations, then store 0x2a at address 8.
	m.TypeSection = append(m.TypeSection, tVoid)
	m.FunctionSection = append(m.FunctionSection, uint32(len(m.TypeSection)-1))
	m.CodeSection = append(m.CodeSection, &wasm.Code{LocalTypes: []wasm.ValueType{i32}, Body: body(
		[]byte{0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6a, 0x22, 0x00, 0x41, 0xe8, 0x07, 0x48, 0x0d, 0x00, 0x0b},
		[]byte{0x41, 0x08, 0x41, 0x2a, 0x36, 0x02, 0x00})})
	start := uint32(len(m.CodeSection) - 1)
	m.StartSection = &start
	v, err := rt.Load(context.Background(), Spec{Name: "start-ok", MinInstances: 1}, encode(m))
	if err != nil {
		t.Fatalf("a finite start section: %v", err)
	}
	in := v.idle.get()
	if b, _ := in.mem.ReadByte(8); b != 0x2a {
		t.Errorf("the start function did not run: memory[8] = %#x", b)
	}
	v.idle.put(in)
	v.Close()

	began := time.Now()
	_, err = rt.Load(context.Background(), Spec{Name: "start-loop"}, hostileWasm(t, "start-loop"))
	took := time.Since(began)
	var le *LoadError
	if !errors.As(err, &le) || le.Item != "start section" || !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want a start-section timeout", err)
	}
	t.Logf("never-ending start refused after %v (StartTimeout 100ms): %v", took, err)
	// Generous: a garbage collection waiting for the spinning start
	// leaves only the loop budget (2 iterations per nanosecond of the
	// 100 ms) to end it, and on a starved machine an iteration takes
	// many wall-clock nanoseconds.
	if took > 60*time.Second {
		t.Errorf("refused after %v", took)
	}
}

// TestBulkMemoryChunks runs the chunked memory.fill and memory.copy
// against Go's own: random ranges, overlapping both ways, sizes around
// the chunk, out-of-bounds ranges trapping before they write.
func TestBulkMemoryChunks(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	if err := instantiateInternal(ctx, r); err != nil {
		t.Fatal(err)
	}
	tFill := &wasm.FunctionType{Params: []wasm.ValueType{i32, i32, i32}}
	m := &wasm.Module{
		TypeSection:     []*wasm.FunctionType{tFill},
		FunctionSection: []wasm.Index{0, 0},
		MemorySection:   &wasm.Memory{Min: 4},
		CodeSection: []*wasm.Code{
			{Body: []byte{0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfc, 0x0b, 0x00, 0x0b}},
			{Body: []byte{0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfc, 0x0a, 0x00, 0x00, 0x0b}},
		},
		ExportSection: []*wasm.Export{
			{Type: wasm.ExternTypeFunc, Name: "fill", Index: 0},
			{Type: wasm.ExternTypeFunc, Name: "copy", Index: 1},
			{Type: wasm.ExternTypeMemory, Name: "memory", Index: 0},
		},
	}
	if err := addLoopGuard(m, 0, 0, guardOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(m.CodeSection) != 4 {
		t.Fatalf("%d functions: the bulk functions were not appended", len(m.CodeSection))
	}
	mod, err := r.InstantiateWithConfig(ctx, encode(m), wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	budget := mod.ExportedGlobal(stopGlobalName).(api.MutableGlobal)
	mem := mod.Memory()
	size := int(mem.Size())
	ref := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range ref {
		ref[i] = byte(rng.Uint32())
	}
	mem.Write(0, ref)
	fill, cpy := mod.ExportedFunction("fill"), mod.ExportedFunction("copy")
	lengths := []int{0, 1, 7, bulkChunk - 1, bulkChunk, bulkChunk + 1, 3*bulkChunk + 5, size}
	for i := 0; i < 400; i++ {
		n := lengths[rng.IntN(len(lengths))]
		if rng.IntN(4) == 0 {
			n = rng.IntN(size + 1)
		}
		d, s := rng.IntN(size+2), rng.IntN(size+2)
		if i%5 == 0 && d+n <= size { // overlapping
			s = min(size, max(0, d+rng.IntN(2*bulkChunk+1)-bulkChunk))
		}
		budget.Set(loopBudget(time.Second))
		isFill := i%3 == 0
		var err error
		if isFill {
			_, err = fill.Call(ctx, uint64(d), uint64(i), uint64(n))
		} else {
			_, err = cpy.Call(ctx, uint64(d), uint64(s), uint64(n))
		}
		oob := d+n > size || (!isFill && s+n > size)
		switch {
		case oob && err == nil:
			t.Fatalf("case %d: out of bounds (d %d, s %d, n %d) did not trap", i, d, s, n)
		case !oob && err != nil:
			t.Fatalf("case %d: d %d, s %d, n %d: %v", i, d, s, n, err)
		case !oob && isFill:
			for j := d; j < d+n; j++ {
				ref[j] = byte(i)
			}
		case !oob:
			copy(ref[d:d+n], ref[s:s+n])
		}
		got, _ := mem.Read(0, uint32(size))
		if !bytes.Equal(got, ref) {
			t.Fatalf("case %d (fill %v, d %d, s %d, n %d): memory differs from Go's", i, isFill, d, s, n)
		}
	}
}

// TestDeepRecursionIsBounded: unbounded recursion traps at the call
// depth limit, quickly and without growing the heap by the size of
// wazero's stack.
func TestDeepRecursionIsBounded(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { testDeepRecursionIsBounded(t, tier.opts) })
	}
}

func testDeepRecursionIsBounded(t *testing.T, opts Options) {
	opts.Logger = discardLogger()
	rt := newRuntime(t, opts)
	v, err := rt.Load(context.Background(), Spec{Name: "rec", MinInstances: 1, Deadline: time.Second, AcquireTimeout: 10 * time.Second}, hostileWasm(t, "deep-recursion"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = v.Cache(context.Background(), &cacheReq)
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), depthTrap(opts)) {
		t.Fatalf("err = %v, want a call-depth trap", err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("trapped: %v; %d calls, slowest %v; heap in use %d MiB", err, v.Stats().Calls, v.Stats().CallTime.Max, ms.HeapInuse>>20)
}

// depthTrap is what the error of a recursion stopped at the depth limit
// says: the guard's limit on the compiled tier; on the interpreted tier,
// wazero's interpreter traps first, at its own ceiling of 2,000 frames.
func depthTrap(opts Options) string {
	if opts.interpretOnly {
		return "stack overflow"
	}
	return "call depth over 16384"
}

// TestRecursionComesBackEveryStep: the call depth is handed out
// depthStep units at a time, so a recursion reaches the refill function
// (and Go, where the clock is read and a collection can scan the
// goroutine) every step: a recursion 3,000 deep (1,500 on the
// interpreted tier, whose interpreter allows 2,000 frames) succeeds
// twice on one instance, each call asking for depth once a step, and
// unbounded recursion still traps at the limit (the interpreter's, on
// its tier).
func TestRecursionComesBackEveryStep(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { testRecursionComesBackEveryStep(t, tier.opts) })
	}
}

func testRecursionComesBackEveryStep(t *testing.T, opts Options) {
	opts.Logger = discardLogger()
	rt := newRuntime(t, opts)
	ctx := context.Background()
	m := echoRouteModule()
	// rec(n): if n { rec(n-1) }, called from decide with 3,000.
	m.TypeSection = append(m.TypeSection, &wasm.FunctionType{Params: []wasm.ValueType{wasm.ValueTypeI32}})
	rec := uint32(len(m.FunctionSection))
	m.FunctionSection = append(m.FunctionSection, uint32(len(m.TypeSection)-1))
	m.CodeSection = append(m.CodeSection, &wasm.Code{Body: wasmcode.Body(
		wasmcode.LocalGet(0), []byte{0x04, 0x40}, // if
		wasmcode.LocalGet(0), wasmcode.I32Const(1), []byte{0x6b}, wasmcode.Call(rec), // rec(n-1)
		[]byte{0x0b})}) // end
	depth, asks := int64(3000), int64(2)
	if opts.interpretOnly {
		depth, asks = 1500, 1
	}
	m.CodeSection[4].Body = append(wasmcode.Cat(wasmcode.I32Const(depth), wasmcode.Call(rec)), m.CodeSection[4].Body...)
	v, err := rt.Load(ctx, Spec{Name: "rec3000", Config: []byte("ok"), MinInstances: 1, MaxInstances: 1, Deadline: time.Second, AcquireTimeout: 10 * time.Second}, encode(m))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for i := range 2 {
		before := rt.refills.Load()
		d, err := v.Route(ctx, &abi.RouteRequest{Message: "x"})
		if err != nil || d.Reason != "ok" {
			t.Fatalf("call %d: %+v, %v", i, d, err)
		}
		if n := rt.refills.Load() - before; n != asks {
			t.Errorf("call %d asked for depth %d times, want %d (%d deep, %d a step)", i, n, asks, depth, depthStep)
		}
	}
	if s := v.Stats(); s.Created != 1 {
		t.Errorf("%d instances created: the recursion's calls must keep theirs", s.Created)
	}

	deep, err := rt.Load(ctx, Spec{Name: "rec", MinInstances: 1, Deadline: time.Second, AcquireTimeout: 10 * time.Second}, hostileWasm(t, "deep-recursion"))
	if err != nil {
		t.Fatal(err)
	}
	defer deep.Close()
	before := rt.refills.Load()
	if _, err := deep.Cache(ctx, &cacheReq); !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), depthTrap(opts)) {
		t.Fatalf("err = %v, want the call-depth trap", err)
	}
	if n, want := rt.refills.Load()-before, int64(DefaultMaxCallDepth/depthStep-1); n < want && !opts.interpretOnly {
		t.Errorf("unbounded recursion asked for depth %d times before its trap, want at least %d", n, want)
	}
}

// TestLongPlaceWaitEndsAtDeadline: a call that must wait for a long
// place (one spins in it with a deadline of 1 s) ends at its own
// deadline while it waits, as a timeout, instead of waiting for the
// place: with 16 callers a wait behind newer callers' first slices ran
// 10 ms calls to 72-147 ms. Needs two processors (one long place).
func TestLongPlaceWaitEndsAtDeadline(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	rt := newRuntime(t, Options{Logger: discardLogger(), MaxDeadline: 5 * time.Second})
	if cap(rt.long) != 1 {
		t.Fatalf("%d long places, want 1 with two processors", cap(rt.long))
	}
	holder := loadGuest(t, rt, "loop", "", Spec{Name: "holder", MinInstances: 1, MaxInstances: 1, Deadline: time.Second, AcquireTimeout: 10 * time.Second})
	waiter := loadGuest(t, rt, "loop", "", Spec{Name: "waiter", MinInstances: 1, MaxInstances: 1, Deadline: 20 * time.Millisecond, AcquireTimeout: 10 * time.Second})
	held := make(chan error, 1)
	go func() {
		_, err := holder.Route(context.Background(), &abi.RouteRequest{Message: "x"})
		held <- err
	}()
	waitFor(t, "the holder to take the long place", func() bool { return len(rt.long) == 1 })
	start := time.Now()
	_, err := waiter.Route(context.Background(), &abi.RouteRequest{Message: "x"})
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("waiter: %v, want a timeout", err)
	}
	if max := waiter.Stats().CallTime.Max; max > 500*time.Millisecond || took > 500*time.Millisecond {
		t.Errorf("the waiting call took %v (its own time %v) against a 20 ms deadline: it waited for the holder", took, max)
	}
	if len(rt.long) != 1 {
		t.Errorf("the waiter's timeout left %d long places taken, want the holder's 1", len(rt.long))
	}
	if err := <-held; !errors.Is(err, ErrTimeout) {
		t.Fatalf("holder: %v, want a timeout", err)
	}
	t.Logf("the waiting call ended after %v (deadline 20 ms) while another held the long place", took)
}

// TestRoutineRecycleIsNoFailure: recycling after RecycleCalls calls is
// routine: counted apart from forced recycles, and no call fails.
func TestRoutineRecycleIsNoFailure(t *testing.T) {
	rt := testRuntime(t)
	v, err := rt.Load(context.Background(), Spec{Name: "echo-recycle", Config: []byte("ok"), MinInstances: 1, RecycleCalls: 2,
		Deadline: time.Second, AcquireTimeout: 10 * time.Second}, encode(echoRouteModule()))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 2})
	e.Activate(abi.KindRoute, v)
	for i := range 6 {
		if _, r := e.Route(context.Background(), &abi.RouteRequest{Message: "x"}); r.Outcome != OutcomeOK {
			t.Fatalf("call %d: %v", i, r.Outcome)
		}
	}
	s := v.Stats()
	if s.Recycles < 2 || s.ForcedRecycles != 0 || s.Failures != 0 || e.List()[0].Quarantined {
		t.Errorf("stats %+v, want routine recycles and no failure", s)
	}
	if n := s.CallTime.Counts; func() (sum int64) {
		for _, c := range n {
			sum += c
		}
		return
	}() != 6 {
		t.Errorf("call-time histogram holds %v, want 6 calls", n)
	}
}

// TestHostileConcurrent: 16 concurrent clients of a hostile module
// while a probe goroutine ticks every millisecond: the process keeps
// running (the probe's worst gap, the stand-in for a health check, and a
// garbage collection's pause stay bounded) and every call's own duration
// stays bounded. Bounds for a loaded machine; the figures are logged.
func TestHostileConcurrent(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { testHostileConcurrent(t, tier.opts) })
	}
}

func testHostileConcurrent(t *testing.T, opts Options) {
	opts.Logger = discardLogger()
	rt := newRuntime(t, opts)
	for _, name := range []string{"call-tree", "fat-recursion", "memory-fill-loop", "log-flood"} {
		t.Run(name, func(t *testing.T) {
			v, err := rt.Load(context.Background(), Spec{Name: name, Deadline: 2 * time.Millisecond, MaxInstances: 16, AcquireTimeout: 30 * time.Second}, hostileWasm(t, name))
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 1 << 30})
			e.Activate(abi.KindCache, v)
			stop := make(chan struct{})
			gaps := make(chan time.Duration, 1)
			go func() {
				var worst time.Duration
				last := time.Now()
				for {
					select {
					case <-stop:
						gaps <- worst
						return
					case <-time.After(time.Millisecond):
					}
					now := time.Now()
					worst = max(worst, now.Sub(last))
					last = now
				}
			}()
			var wg sync.WaitGroup
			var gc time.Duration
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 10 {
						if _, r := e.Cache(context.Background(), &cacheReq); r.Outcome == OutcomeOK {
							t.Errorf("a hostile call answered ok")
						}
						if g == 0 && i == 5 {
							s := time.Now()
							runtime.GC()
							gc = time.Since(s)
						}
					}
				}()
			}
			wg.Wait()
			close(stop)
			worst := <-gaps
			s := v.Stats()
			t.Logf("%d calls, %d timeouts, %d traps; slowest call %v; probe's worst gap %v; a GC took %v",
				s.Calls, s.Timeouts, s.Traps, s.CallTime.Max, worst, gc)
			// Bounds for a shared 2-core machine whose load runs at 10-20.
			// With the whole deadline's budget armed at once a garbage
			// collection waited for spinning guests, and these ran to
			// 1.4 s (calls) and 422 ms (probe gaps); the unguarded call
			// tree of the issue froze for 14-21 s. With budget slices
			// (hostRefill) and at most GOMAXPROCS guest calls at once,
			// an idle machine showed calls of 4-12 ms and gaps of 5-9 ms
			// (fat-recursion, whose calls grow wazero's stack by
			// megabytes: 60-76 ms and 53-61 ms), and eight busy loops
			// alongside (load 10) calls of 29-103 ms, gaps of 25-78 ms and
			// garbage collections of up to 443 ms.
			// Under the race detector (whose run has other packages'
			// tests alongside) fat-recursion reached 495 ms and 509 ms:
			// the bounds are four times looser there.
			bound, gcBound := 500*time.Millisecond, 2*time.Second
			if raceEnabled {
				bound, gcBound = 4*bound, 4*gcBound
			}
			if s.CallTime.Max > bound || worst > bound || gc > gcBound {
				t.Errorf("slowest call %v (want at most %v), probe gap %v (%v), GC %v (%v)", s.CallTime.Max, bound, worst, bound, gc, gcBound)
			}
		})
	}
}

// TestDeadlineCeiling: a deadline above Options.MaxDeadline (a push of
// deadline_ms=1000000000) is refused at load, naming it.
func TestDeadlineCeiling(t *testing.T) {
	rt := testRuntime(t)
	_, err := rt.Load(context.Background(), Spec{Name: "slow", Deadline: 1_000_000_000 * time.Millisecond}, encode(echoRouteModule()))
	var le *LoadError
	if !errors.As(err, &le) || le.Item != "deadline" {
		t.Fatalf("err = %v, want a *LoadError naming the deadline", err)
	}
	if lim := (Options{}).Limits(); lim.MaxDeadline != DefaultMaxDeadline || lim.MaxTags != DefaultMaxTags || lim.StartTimeout != DefaultStartTimeout {
		t.Errorf("Limits() = %+v, want the defaults filled in", lim)
	}
}
