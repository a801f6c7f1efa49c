package policy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/sdk/abi"
)

// tiers are the two ways a version runs, for the tests that hold for
// both: the compiled tier, and the interpreted tier a tiered start
// serves from until its module is compiled (Options.interpretOnly keeps
// it there).
var tiers = []struct {
	name string
	opts Options
}{
	{"compiled", Options{}},
	{"interpreted", Options{interpretOnly: true}},
}

// gateCompiles makes rt's background compilations wait until the
// returned function is called.
func gateCompiles(rt *Runtime) (open func()) { return rt.HoldCompilations() }

// TestTieredStartPromotes: under WithTieredStart a module not in the
// compilation cache is served interpreted at once and compiled in the
// background; the version then runs compiled, the interpreted code is
// closed, and the compilation cache is noted as holding the module, so
// that the next tiered start of it (another runtime on the same cache)
// loads it compiled.
func TestTieredStartPromotes(t *testing.T) {
	cache := t.TempDir()
	rt := newRuntime(t, Options{CacheDir: cache, Logger: discardLogger()})
	open := gateCompiles(rt)
	defer open()
	ctx := WithTieredStart(context.Background())
	bin := encode(echoRouteModule())
	v, err := rt.Load(ctx, Spec{Name: "echo", Config: []byte("tiered"), MinInstances: 2}, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.ExecTier() != Interpreted || v.Stats().ExecTier != Interpreted {
		t.Fatalf("tier %v before the compilation, want interpreted", v.ExecTier())
	}
	if n := v.Stats().Instances; n != 1 {
		t.Errorf("%d interpreted instances started, want 1", n)
	}
	if d, err := v.Route(context.Background(), &abi.RouteRequest{Message: "x"}); err != nil || d.Reason != "tiered" {
		t.Fatalf("interpreted decision %+v, %v", d, err)
	}
	select {
	case <-v.Compiled():
		t.Fatal("Compiled closed before the compilation ran")
	default:
	}
	actx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if err := rt.AwaitCompiled(actx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AwaitCompiled with the compilation held: %v, want the deadline", err)
	}
	cancel()
	open()
	if err := rt.AwaitCompiled(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-v.Compiled()
	s := v.Stats()
	if v.ExecTier() != Compiled || s.ExecTier != Compiled {
		t.Fatalf("tier %v after the compilation, want compiled", v.ExecTier())
	}
	if s.Instances != 2 || s.Idle != 2 {
		t.Errorf("after the promotion: %d instances, %d idle; want the minimum, 2, all compiled", s.Instances, s.Idle)
	}
	if d, err := v.Route(context.Background(), &abi.RouteRequest{Message: "x"}); err != nil || d.Reason != "tiered" {
		t.Fatalf("compiled decision %+v, %v", d, err)
	}
	rt.mu.Lock()
	m := rt.modules[v.Digest()]
	interp, compiled := m.interp, m.compiled
	rt.mu.Unlock()
	if interp != nil || compiled == nil {
		t.Errorf("module after the promotion: interpreted code kept %v, compiled %v", interp != nil, compiled != nil)
	}
	if !rt.knownCompiled(m.preparedForTest(t, rt, bin)) {
		t.Error("the compilation cache is not noted as holding the module")
	}

	rt2 := newRuntime(t, Options{CacheDir: cache, Logger: discardLogger()})
	v2, err := rt2.Load(ctx, Spec{Name: "echo", Config: []byte("again"), MinInstances: 1}, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if v2.ExecTier() != Compiled {
		t.Errorf("a tiered start of a module the cache holds runs %v, want compiled", v2.ExecTier())
	}
}

// preparedForTest is the prepared bytes of bin under rt's limits.
func (m *compiledModule) preparedForTest(t *testing.T, rt *Runtime, bin []byte) []byte {
	t.Helper()
	p, err := prepare("echo", bin, rt.lim)
	if err != nil {
		t.Fatal(err)
	}
	return p.wasm
}

// TestPromotionServesEveryCall: callers deciding without pause while
// the version moves to compiled code all get the policy's decision: the
// swap fails no call and drops none, and calls went to both tiers.
func TestPromotionServesEveryCall(t *testing.T) {
	rt := newRuntime(t, Options{CacheDir: t.TempDir(), Logger: discardLogger()})
	open := gateCompiles(rt)
	defer open()
	v, err := rt.Load(WithTieredStart(context.Background()), Spec{Name: "echo", Config: []byte("swap"), MinInstances: 2, MaxInstances: 8, Deadline: time.Second, AcquireTimeout: 10 * time.Second}, encode(echoRouteModule()))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	if _, err := e.Activate(abi.KindRoute, v); err != nil {
		t.Fatal(err)
	}
	var (
		stop                  atomic.Bool
		calls, bad            atomic.Int64
		before, after, during atomic.Int64
		wg                    sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				tier := v.ExecTier()
				d, r := e.Route(context.Background(), &abi.RouteRequest{Message: "x"})
				calls.Add(1)
				if r.Outcome != OutcomeOK || d.Reason != "swap" {
					bad.Add(1)
				}
				switch {
				case tier == Interpreted && v.ExecTier() == Interpreted:
					before.Add(1)
				case tier == Compiled:
					after.Add(1)
				default:
					during.Add(1)
				}
			}
		}()
	}
	waitFor(t, "calls on the interpreted tier", func() bool { return before.Load() >= 200 })
	open()
	<-v.Compiled()
	n := after.Load()
	waitFor(t, "calls on the compiled tier", func() bool { return after.Load() >= n+200 })
	stop.Store(true)
	wg.Wait()
	t.Logf("%d calls: %d interpreted, %d across the swap, %d compiled; %d not the policy's decision", calls.Load(), before.Load(), during.Load(), after.Load(), bad.Load())
	if bad.Load() != 0 {
		t.Errorf("%d of %d calls did not get the policy's decision", bad.Load(), calls.Load())
	}
	waitFor(t, "the interpreted instances to be closed", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		for in := range v.instances {
			if in.code.tier != Compiled {
				return false
			}
		}
		return true
	})
	if s := v.Stats(); s.Failures+s.Timeouts+s.Traps != 0 {
		t.Errorf("stats %+v: failures across the swap", s)
	}
}

// TestConcurrentLoadsPrepareOnce: versions of one module loaded at once
// (a bundle's kinds at start-up) share one preparation and one
// interpreted code, and all move to the one compiled code.
func TestConcurrentLoadsPrepareOnce(t *testing.T) {
	rt := newRuntime(t, Options{CacheDir: t.TempDir(), Logger: discardLogger()})
	open := gateCompiles(rt)
	defer open()
	bin := encode(echoRouteModule())
	vs := make([]*Version, 3)
	var wg sync.WaitGroup
	for i := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := rt.Load(WithTieredStart(context.Background()), Spec{Name: "echo", Config: []byte{'a' + byte(i)}, MinInstances: 1}, bin)
			if err != nil {
				t.Error(err)
				return
			}
			vs[i] = v
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := rt.prepares.Load(); n != 1 {
		t.Errorf("the module was prepared %d times, want once", n)
	}
	for i, v := range vs {
		defer v.Close()
		if v.module != vs[0].module || v.code.Load() != vs[0].code.Load() {
			t.Errorf("version %d has a module or code of its own", i)
		}
	}
	open()
	if err := rt.AwaitCompiled(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if d, err := v.Route(context.Background(), &abi.RouteRequest{Message: "x"}); v.ExecTier() != Compiled || err != nil || d.Reason != string(rune('a'+i)) {
			t.Errorf("version %d after the compilation: %v, %+v, %v", i, v.ExecTier(), d, err)
		}
	}
}

// TestQuarantineLiftedOnPromotion: a version quarantined for failures
// on the interpreted tier gets a fresh count once it runs compiled; one
// quarantined on the compiled tier stays quarantined.
func TestQuarantineLiftedOnPromotion(t *testing.T) {
	rt := newRuntime(t, Options{CacheDir: t.TempDir(), Logger: discardLogger()})
	open := gateCompiles(rt)
	defer open()
	v, err := rt.Load(WithTieredStart(context.Background()), Spec{Name: "echo", Config: []byte("q"), MinInstances: 1}, encode(echoRouteModule()))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: 3})
	e.Activate(abi.KindRoute, v)
	b := e.slots[abi.KindRoute].Load()
	for range 3 {
		e.failed(b, &CallError{Kind: abi.KindRoute, Err: ErrTimeout})
	}
	if _, r := e.Route(context.Background(), &abi.RouteRequest{Message: "x"}); r.Outcome != OutcomeFallback {
		t.Fatalf("quarantined on the interpreted tier: outcome %v, want the fallback", r.Outcome)
	}
	if err := e.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "route: echo@") {
		t.Errorf("Ready with the version quarantined: %v", err)
	}
	open()
	<-v.Compiled()
	if d, r := e.Route(context.Background(), &abi.RouteRequest{Message: "x"}); r.Outcome != OutcomeOK || d.Reason != "q" {
		t.Fatalf("after the promotion: %+v, %v; want the policy's decision", d, r.Outcome)
	}
	if err := e.Ready(context.Background()); err == nil || strings.Contains(err.Error(), "route") {
		t.Errorf("Ready after the promotion: %v; want only the kinds without a policy", err)
	}
	for range 3 {
		e.failed(b, &CallError{Kind: abi.KindRoute, Err: ErrTimeout})
	}
	if _, r := e.Route(context.Background(), &abi.RouteRequest{Message: "x"}); r.Outcome != OutcomeFallback {
		t.Fatalf("quarantined on the compiled tier: outcome %v, want the fallback", r.Outcome)
	}
}

// TestInterpretedStartTimeoutCompiles: a module whose start section
// the interpreter cannot run within StartTimeout, while compiled code
// can, is loaded compiled under a tiered start: the interpreter is a
// shortcut, never a stricter limit.
func TestInterpretedStartTimeoutCompiles(t *testing.T) {
	var log testkit.SyncBuffer
	rt := newRuntime(t, Options{CacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&log, nil)), StartTimeout: 100 * time.Millisecond})
	m := echoRouteModule()
	// start: a counted loop of 3 million iterations, some 3 ms compiled
	// and well over 100 ms interpreted.
	m.TypeSection = append(m.TypeSection, tVoid)
	m.FunctionSection = append(m.FunctionSection, uint32(len(m.TypeSection)-1))
	m.CodeSection = append(m.CodeSection, &wasm.Code{LocalTypes: []wasm.ValueType{i32}, Body: body(
		[]byte{0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6a, 0x22, 0x00, 0x41, 0xc0, 0x8d, 0xb7, 0x01, 0x48, 0x0d, 0x00, 0x0b})})
	start := uint32(len(m.CodeSection) - 1)
	m.StartSection = &start
	v, err := rt.Load(WithTieredStart(context.Background()), Spec{Name: "slow-start", Config: []byte("s"), MinInstances: 1}, encode(m))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.ExecTier() != Compiled {
		t.Errorf("tier %v, want compiled", v.ExecTier())
	}
	if !strings.Contains(log.String(), "the interpreter did not start the module in time") {
		t.Errorf("the interpreter's start did not time out (the test's premise): log %s", log.String())
	}
	if d, err := v.Route(context.Background(), &abi.RouteRequest{Message: "x"}); err != nil || d.Reason != "s" {
		t.Errorf("decision %+v, %v", d, err)
	}
}

// TestTieredRepositoryPolicies: the repository's policies under a
// tiered start with an empty cache: each decides interpreted, then
// compiled, with the same decisions. Needs go generate ./policies.
func TestTieredRepositoryPolicies(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the repository's policies")
	}
	if raceEnabled {
		// The interpreter under the race detector takes seconds to
		// start a Go guest, past the start-up timeouts (such a load
		// waits for the compiled code instead, which the gate below
		// holds); TestTieredStartPromotes covers the mechanism.
		t.Skip("the race detector slows the interpreter past the start-up timeouts")
	}
	dir := filepath.Join("..", "..", "policies")
	f, err := ReadPoliciesFile(dir)
	if err != nil {
		t.Skip(err)
	}
	rt := newRuntime(t, Options{CacheDir: t.TempDir(), Logger: discardLogger()})
	open := gateCompiles(rt)
	defer open()
	ctx := WithTieredStart(context.Background())
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	var vs []*Version
	for _, p := range f.Policies {
		wasm, err := os.ReadFile(filepath.Join(dir, p.File))
		if err != nil {
			t.Skipf("%v (run go generate ./policies)", err)
		}
		spec := p.Spec()
		// A generous deadline: the figure of the interpreter's speed is
		// BenchmarkTierDecision's; under the race detector, and on a
		// loaded machine, interpreted decisions take many times longer.
		spec.Deadline = 5 * time.Second
		v, err := rt.Load(ctx, spec, wasm)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		kind, _ := abi.ParseKind(p.Kind)
		if _, err := e.Activate(kind, v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	decide := func() (abi.CacheDecision, abi.RouteDecision, abi.CompressDecision) {
		c, r1 := e.Cache(context.Background(), &cacheReq)
		r, r2 := e.Route(context.Background(), &abi.RouteRequest{Message: message500})
		req := abi.CompressRequest{Query: "sister", BudgetTokens: 100, Messages: []abi.Message{
			{ID: "a", Text: "my sister moved to Lyon", Tokens: 40}, {ID: "b", Text: "the weather is fine", Tokens: 40}, {ID: "c", Text: "hello", Tokens: 40}}}
		k, r3 := e.Compress(context.Background(), &req)
		for _, r := range []Result{r1, r2, r3} {
			if r.Outcome != OutcomeOK {
				t.Errorf("%s: outcome %v", r.Kind, r.Outcome)
			}
		}
		return c, r, k
	}
	for _, v := range vs {
		if v.ExecTier() != Interpreted {
			t.Fatalf("%s runs %v before the compilations, want interpreted", v.Name(), v.ExecTier())
		}
	}
	c1, r1, k1 := decide()
	open()
	if err := rt.AwaitCompiled(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.ExecTier() != Compiled {
			t.Fatalf("%s runs %v after the compilations, want compiled", v.Name(), v.ExecTier())
		}
	}
	c2, r2, k2 := decide()
	if c1.Key != c2.Key || c1.Action != c2.Action || r1 != r2 || len(k1.Keep) != len(k2.Keep) {
		t.Errorf("decisions differ across the tiers: cache %+v / %+v, route %+v / %+v, compress %+v / %+v", c1, c2, r1, r2, k1, k2)
	}
}
