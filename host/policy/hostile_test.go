package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/sdk/abi"
)

// waitFor polls cond until it holds or the generous timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInfiniteLoopIsStopped(t *testing.T) {
	rt := testRuntime(t)
	v := loadGuest(t, rt, "loop", "", Spec{Name: "spinner", MinInstances: 1, MaxInstances: 2, AcquireTimeout: 10 * time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger(), DefaultTier: "premium"})
	if _, err := e.Activate(abi.KindRoute, v); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, r := e.Route(context.Background(), &abi.RouteRequest{Message: "hello"})
	elapsed := time.Since(start)
	if r.Outcome != OutcomeTimeout {
		t.Fatalf("Outcome = %v, want timeout", r.Outcome)
	}
	if d != FallbackRoute(abi.TierPremium) {
		t.Errorf("decision = %+v, want the fallback with the configured tier", d)
	}
	if r.Policy != "spinner" || r.Version != v.Digest() {
		t.Errorf("Result attribution = %q@%q", r.Policy, r.Version)
	}
	// The figure to watch is BenchmarkRunawayStop; this bound only
	// catches a guard that does not work at all.
	if elapsed > 5*time.Second {
		t.Errorf("stopped after %v", elapsed)
	}
	t.Logf("runaway call returned after %v (deadline %v)", elapsed, v.Deadline(abi.KindRoute))
	waitFor(t, "the stopped instance to be replaced", func() bool {
		s := v.Stats()
		return s.Timeouts == 1 && s.Discarded >= 1 && s.Instances == 1 && s.Idle == 1
	})
}

// TestMemoryBombIsCapped: a guest allocating without end traps at the
// memory cap, on both tiers (the interpreted one's start-up timeouts are
// generous: the test guest is a Go module, which the interpreter starts
// in tens of milliseconds, seconds under the race detector).
func TestMemoryBombIsCapped(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) {
			opts := tier.opts
			if opts.interpretOnly {
				if raceEnabled {
					t.Skip("the race detector makes an interpreted Go guest too slow to fill its memory within the deadline")
				}
				opts.StartTimeout, opts.InitTimeout = 10*time.Second, 10*time.Second
			}
			opts.MemoryLimitPages, opts.Logger = 256, discardLogger()
			testMemoryBombIsCapped(t, opts)
		})
	}
}

func testMemoryBombIsCapped(t *testing.T, opts Options) {
	rt := newRuntime(t, opts)
	v := loadGuest(t, rt, "bomb", "", Spec{Name: "bomb", MinInstances: 1, Deadline: 5 * time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	e.Activate(abi.KindCache, v)
	d, r := e.Cache(context.Background(), &cacheReq)
	if r.Outcome == OutcomeOK || d.Action != abi.CacheBypass {
		t.Fatalf("decision %+v, outcome %v: want the bypass fallback", d, r.Outcome)
	}
	if r.Outcome != OutcomeTrap {
		t.Errorf("Outcome = %v, want trap (out of memory)", r.Outcome)
	}
	waitFor(t, "the instance to be replaced", func() bool {
		s := v.Stats()
		return s.Traps == 1 && s.Discarded >= 1 && s.Idle == 1
	})
}

func TestFaultsServeFallback(t *testing.T) {
	rt := testRuntime(t)
	req := abi.CompressRequest{BudgetTokens: 100, Messages: []abi.Message{{ID: "a", Tokens: 60}, {ID: "b", Tokens: 30}, {ID: "c", Tokens: 50}}}
	tests := []struct {
		mode    string
		outcome Outcome
		err     error
		discard bool
	}{
		{"panic", OutcomeFallback, ErrPolicy, false},
		{"error", OutcomeFallback, ErrPolicy, false},
		{"trap", OutcomeTrap, ErrTrap, true},
		{"bad", OutcomeFallback, ErrBadDecision, false},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			v := loadGuest(t, rt, tt.mode, "", Spec{MinInstances: 1, Deadline: time.Second})
			e := NewEngine(EngineOptions{Logger: discardLogger()})
			e.Activate(abi.KindCompress, v)
			d, r := e.Compress(context.Background(), &req)
			if r.Outcome != tt.outcome {
				t.Errorf("Outcome = %v, want %v", r.Outcome, tt.outcome)
			}
			if want := FallbackCompress(&req); !reflect.DeepEqual(d, want) {
				t.Errorf("decision = %+v, want the fallback %+v", d, want)
			}
			if _, err := v.Compress(context.Background(), &req); !errors.Is(err, tt.err) {
				t.Errorf("direct call err = %v, want %v", err, tt.err)
			}
			if s := v.Stats(); (s.Discarded > 0) != tt.discard {
				t.Errorf("Discarded = %d, want discard %v", s.Discarded, tt.discard)
			}
		})
	}
}

func TestQuarantineAfterConsecutiveFailures(t *testing.T) {
	rt := testRuntime(t)
	bad := loadGuest(t, rt, "error", "", Spec{MinInstances: 1, Deadline: 10 * time.Second})
	good := loadGuest(t, rt, "ok", "good", Spec{MinInstances: 1, Deadline: 10 * time.Second})
	obs := &countingObserver{}
	e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 3, Observer: obs})
	e.Activate(abi.KindRoute, bad)
	for i := 0; i < 5; i++ {
		e.Route(context.Background(), &abi.RouteRequest{Message: "x"})
	}
	if s := bad.Stats(); s.Failures != 3 {
		t.Errorf("failed calls reaching the guest = %d, want 3 (then quarantined)", s.Failures)
	}
	if l := e.List(); len(l) != 1 || !l[0].Quarantined {
		t.Errorf("List = %+v, want the route version quarantined", l)
	}
	if err := e.Ready(context.Background()); err == nil {
		t.Error("Ready = nil with a quarantined version")
	}
	if obs.quarantined() != 1 || obs.outcomes(OutcomeFallback) != 5 {
		t.Errorf("observer: %d quarantines, %d fallbacks; want 1, 5", obs.quarantined(), obs.outcomes(OutcomeFallback))
	}
	prev, _ := e.Activate(abi.KindRoute, good)
	if prev != bad {
		t.Error("Activate did not return the previous version")
	}
	d, r := e.Route(context.Background(), &abi.RouteRequest{Message: "x"})
	if r.Outcome != OutcomeOK || d.Reason != "good" {
		t.Errorf("after replacement: %+v %v", d, r.Outcome)
	}
}

func TestSlowPolicyUnderLoadLeavesNoLeak(t *testing.T) {
	rt := newRuntime(t, Options{Logger: discardLogger(), IdleTimeout: 200 * time.Millisecond})
	v := loadGuest(t, rt, "slow", "", Spec{Name: "slow", MinInstances: 1, MaxInstances: 8, Deadline: 10 * time.Second, AcquireTimeout: 30 * time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	e.Activate(abi.KindCache, v)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	baseInstances, baseHeap := rt.Instances(), heap()

	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[Outcome]int{}
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				_, r := e.Cache(context.Background(), &cacheReq)
				mu.Lock()
				outcomes[r.Outcome]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if outcomes[OutcomeOK] != 64*3 {
		t.Errorf("outcomes = %v, want all ok", outcomes)
	}
	peak := v.Stats().Created
	waitFor(t, "the pool to shrink back", func() bool { return rt.Instances() == baseInstances })
	after := heap()
	t.Logf("instances: %d before, %d created under load, %d after; heap %d KiB before, %d KiB after",
		baseInstances, peak, rt.Instances(), baseHeap>>10, after>>10)
	if peak <= int64(baseInstances) {
		t.Errorf("the pool did not grow under load (created %d)", peak)
	}
	if after > baseHeap+8<<20 {
		t.Errorf("heap grew from %d to %d KiB", baseHeap>>10, after>>10)
	}
}

// countingObserver records events for assertions.
type countingObserver struct {
	mu         sync.Mutex
	byOutcome  map[Outcome]int
	quarantine int
	created    int
	discarded  map[string]int
}

var _ Observer = (*countingObserver)(nil)

func (o *countingObserver) Decision(kind abi.Kind, policy, version string, outcome Outcome, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byOutcome == nil {
		o.byOutcome = map[Outcome]int{}
	}
	o.byOutcome[outcome]++
}

func (o *countingObserver) InstanceCreated(policy, version string) {
	o.mu.Lock()
	o.created++
	o.mu.Unlock()
}

func (o *countingObserver) InstanceDiscarded(policy, version, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.discarded == nil {
		o.discarded = map[string]int{}
	}
	o.discarded[reason]++
}

func (o *countingObserver) Quarantined(kind abi.Kind, policy, version string) {
	o.mu.Lock()
	o.quarantine++
	o.mu.Unlock()
}

func (o *countingObserver) quarantined() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.quarantine
}

func (o *countingObserver) outcomes(out Outcome) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byOutcome[out]
}

// TestMainIsNotRun documents why the SDK tells authors to register in
// init(): a -buildmode=c-shared module's main.main never runs.
func TestMainIsNotRun(t *testing.T) {
	v := loadGuest(t, testRuntime(t), "mainran", "", Spec{MinInstances: 1, Deadline: 10 * time.Second})
	_, err := v.Cache(context.Background(), &cacheReq)
	if !errors.Is(err, ErrPolicy) {
		t.Fatalf("err = %v: main.main ran in a reactor module", err)
	}
}

func TestGuestLogsReachTheHostLogger(t *testing.T) {
	var buf testkit.SyncBuffer
	rt := newRuntime(t, Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	v := loadGuest(t, rt, "ok", "", Spec{Name: "chatty", MinInstances: 1})
	out := buf.String()
	for _, want := range []string{"initialised in mode ok", "policy=chatty", "version=" + v.Digest()} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

// TestSaturationDoesNotQuarantine: calls that find no free instance are
// served the fallback but never quarantine a healthy version.
func TestSaturationDoesNotQuarantine(t *testing.T) {
	rt := testRuntime(t)
	good := loadGuest(t, rt, "ok", "sat", Spec{MinInstances: 1, Deadline: 10 * time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 3})
	if _, err := e.Activate(abi.KindRoute, good); err != nil {
		t.Fatal(err)
	}
	b := e.slots[abi.KindRoute].Load()
	for i := 0; i < 10; i++ {
		e.failed(b, &CallError{Kind: abi.KindRoute, Err: ErrUnavailable})
	}
	if l := e.List(); len(l) != 1 || l[0].Quarantined {
		t.Fatalf("List = %+v: saturation quarantined the version", l)
	}
	for i := 0; i < 3; i++ {
		e.failed(b, &CallError{Kind: abi.KindRoute, Err: ErrTrap})
	}
	if l := e.List(); !l[0].Quarantined {
		t.Fatalf("List = %+v: three traps in a row did not quarantine", l)
	}
}

// TestCacheIntoReusesMemory: CacheInto gives Cache's decision, its strings
// live in the caller's buffer, a reused buffer and decision make the call
// allocation-free, and a failing policy leaves the fallback with the
// caller's Tags capacity kept.
func TestCacheIntoReusesMemory(t *testing.T) {
	rt := testRuntime(t)
	v := loadGuest(t, rt, "ok", "into", Spec{Name: "into", MinInstances: 1, Deadline: time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	e.Activate(abi.KindCache, v)
	ctx := context.Background()
	want, _ := e.Cache(ctx, &cacheReq)
	var d abi.CacheDecision
	buf := make([]byte, 0, 256)
	buf, r := e.CacheInto(ctx, &cacheReq, &d, buf)
	if r.Outcome != OutcomeOK || !reflect.DeepEqual(d, want) {
		t.Fatalf("CacheInto = %+v (%v), Cache = %+v", d, r.Outcome, want)
	}
	if !bytes.Contains(buf, []byte(d.Key)) || unsafe.StringData(d.Key) == unsafe.StringData(want.Key) {
		t.Fatalf("the key %q is not a view of the caller's buffer", d.Key)
	}
	if n := testing.AllocsPerRun(200, func() {
		buf, _ = e.CacheInto(ctx, &cacheReq, &d, buf[:0])
	}); n != 0 {
		t.Errorf("%v allocations per call with a reused buffer, want 0", n)
	}

	bad := loadGuest(t, rt, "error", "", Spec{MinInstances: 1, Deadline: time.Second})
	e.Activate(abi.KindCache, bad)
	d.Tags = make([]string, 2, 5)
	if _, r := e.CacheInto(ctx, &cacheReq, &d, buf[:0]); r.Outcome != OutcomeFallback || d.Action != abi.CacheBypass || d.Key != "" || len(d.Tags) != 0 || cap(d.Tags) != 5 {
		t.Fatalf("failing policy: %+v (cap %d), %v; want the fallback keeping the Tags capacity", d, cap(d.Tags), r.Outcome)
	}
}

// TestWatchdogParksAndWakes: with nothing running the watchdog parks
// instead of scanning every tick, and the next call wakes it: a runaway
// call started while it was parked is a timeout, and the watchdog woke
// for it. (The refill function's clock may end the call before the
// watchdog's next tick does, so which of the two stopped it is not
// asserted.)
func TestWatchdogParksAndWakes(t *testing.T) {
	rt := testRuntime(t)
	v := loadGuest(t, rt, "loop", "", Spec{Name: "spinner", MinInstances: 1, Deadline: 50 * time.Millisecond})
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	if _, err := e.Activate(abi.KindRoute, v); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		waitFor(t, "the idle watchdog to park", rt.parked.Load)
		before := rt.wakes.Load()
		if _, r := e.Route(context.Background(), &abi.RouteRequest{Message: "hello"}); r.Outcome != OutcomeTimeout {
			t.Fatalf("call %d after parking: outcome %v, want timeout", i, r.Outcome)
		}
		if rt.wakes.Load() == before {
			t.Fatalf("call %d after parking: the watchdog did not wake during a 50 ms call", i)
		}
	}
}
