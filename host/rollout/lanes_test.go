package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/sdk/abi"
)

// hungDeadlineMS is the never-ending candidate's per-call deadline: each
// of its 1,000 cases spins for a second. A guest spinning in compiled code
// returns to Go at every budget slice (the runtime's refill), so a
// garbage collection no longer waits for the call to end; before that, a
// collection during such a check stalled the whole process, measured once
// at 17 s for one rollback.
const hungDeadlineMS = 1000

// hungCases returns n cache cases. Against the test guest in "loop" mode
// every one of them runs until its deadline: with a deadline of 1 s, the
// candidate's check (its self-test) lasts n seconds, and it never ends
// within a test. Which phase hangs does not matter to the manager: the
// check runs outside every lock whatever it does.
func hungCases(n int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name": "spin-%d", "input": {"method": "GET", "route": "/api/challenges", "path": "/api/challenges", "user": "1"}, "want": {"action": "lookup"}}`, i)
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// lanesFixture is a manager serving cache version B with A as its
// rollback target, and a never-ending cache candidate stored, inactive.
type lanesFixture struct {
	mgr        *rollout.Manager
	a, b, hung rollout.Record
}

func newLanesFixture(tb testing.TB) *lanesFixture {
	tb.Helper()
	ctx := context.Background()
	mgr := newManager(tb, newRuntime(tb), rollout.Config{RollbackThreshold: -1})
	f := &lanesFixture{mgr: mgr}
	var err error
	for _, p := range []struct {
		rec *rollout.Record
		tag string
		ttl int
	}{{&f.a, "A", 1800}, {&f.b, "B", 1799}} {
		if *p.rec, err = mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "cache-" + p.tag, Wasm: versionWasm(tb, p.tag),
			Config: cacheConfig(p.ttl), DeadlineMS: deadlineMS}); err != nil {
			tb.Fatal(err)
		}
		if _, err := mgr.Activate(ctx, p.rec.ID); err != nil {
			tb.Fatal(err)
		}
	}
	if f.hung, err = mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "never-ending", Wasm: testGuest(tb),
		Config: []byte(`{"mode": "loop"}`), DeadlineMS: hungDeadlineMS, Cases: hungCases(policy.MaxCases)}); err != nil {
		tb.Fatal(err)
	}
	return f
}

// startHungPush activates the never-ending candidate in the background
// and waits until its check is in its self-test. The channel yields the
// activation's error.
func (f *lanesFixture) startHungPush(tb testing.TB) <-chan error {
	tb.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := f.mgr.Activate(context.Background(), f.hung.ID)
		done <- err
	}()
	eventually(tb, 30*time.Second, "the candidate's check to reach its self-test", func() bool {
		return slices.ContainsFunc(f.mgr.Status().Pending, func(p rollout.PendingStatus) bool {
			return p.Kind == "cache" && p.ID == f.hung.ID && p.Step == rollout.StepSelfTest
		})
	})
	return done
}

// other is the version the i-th rollback goes back to, counting from
// B active: A, B, A, ... (a rollback leaves the version it replaces
// inactive, so each names its target).
func (f *lanesFixture) other(i int) int64 {
	if i%2 == 0 {
		return f.a.ID
	}
	return f.b.ID
}

func (f *lanesFixture) serving(tb testing.TB) string {
	tb.Helper()
	_, res := f.mgr.Decider().Cache(context.Background(), &abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges", User: "1"})
	return res.Policy
}

// TestRollbackDuringNeverEndingPush: while a cache candidate that never
// finishes its check is being checked, a rollback of cache completes
// within 100 ms (median of five; each well under a second), supersedes
// the candidate (whose activation returns ErrSuperseded at once and
// changes nothing), and a push of another kind goes through unhindered.
func TestRollbackDuringNeverEndingPush(t *testing.T) {
	ctx := context.Background()
	f := newLanesFixture(t)
	want := map[bool]string{true: "cache-A", false: "cache-B"}
	var took []time.Duration
	for i := range 5 {
		done := f.startHungPush(t)
		start := time.Now()
		rec, err := f.mgr.RollbackTo(ctx, abi.KindCache, f.other(i))
		d := time.Since(start)
		if err != nil {
			t.Fatalf("rollback %d: %v", i, err)
		}
		took = append(took, d)
		if got := f.serving(t); got != want[i%2 == 0] || rec.Name != got {
			t.Fatalf("rollback %d: serving %s (rollback returned %s), want %s", i, got, rec.Name, want[i%2 == 0])
		}
		select {
		case err := <-done:
			if !errors.Is(err, rollout.ErrSuperseded) {
				t.Fatalf("the superseded activation returned %v, want ErrSuperseded", err)
			}
		case <-time.After(time.Second):
			t.Fatal("the superseded activation did not return within 1 s of the rollback")
		}
		if r, _ := f.mgr.Get(ctx, f.hung.ID); r.Status != rollout.StatusInactive {
			t.Fatalf("the superseded candidate is %s, want inactive", r.Status)
		}
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	t.Logf("rollback latency during a never-ending push: %v (median %v)", took, sorted[len(sorted)/2])
	// 100 ms is the requirement (BenchmarkRollback measures it); the
	// race detector slows the host's side of instance start-up several
	// times over, so its run gets a looser bound.
	bound := map[bool]time.Duration{false: 100 * time.Millisecond, true: 400 * time.Millisecond}[raceEnabled]
	if med := sorted[len(sorted)/2]; med > bound {
		t.Errorf("median rollback latency %v, want within %v", med, bound)
	}
	if sorted[len(sorted)-1] > time.Second {
		t.Errorf("slowest rollback %v, want well under 1 s", sorted[len(sorted)-1])
	}

	// Another kind's push and activation while a cache candidate hangs.
	done := f.startHungPush(t)
	start := time.Now()
	route, err := f.mgr.Push(ctx, rollout.Upload{Kind: "route", Name: "route-ok", Wasm: testGuest(t), Config: []byte(`{"mode": "ok", "tag": "lanes"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.mgr.Activate(ctx, route.ID); err != nil {
		t.Fatal(err)
	}
	routeTook := time.Since(start)
	_, res := f.mgr.Decider().Route(ctx, &abi.RouteRequest{Message: "hello"})
	if res.Policy != "route-ok" || res.Outcome != policy.OutcomeOK {
		t.Fatalf("route served by %q (%s), want route-ok", res.Policy, res.Outcome)
	}
	t.Logf("route push + activation while a cache candidate hangs: %v", routeTook)
	if routeTook > 5*time.Second {
		t.Errorf("route push took %v: held up by the cache candidate", routeTook)
	}
	// The cache candidate is still being checked: nothing waited for it.
	if !slices.ContainsFunc(f.mgr.Status().Pending, func(p rollout.PendingStatus) bool { return p.ID == f.hung.ID }) {
		t.Fatal("the cache candidate's check ended: the test proved nothing")
	}
	select {
	case err := <-done:
		t.Fatalf("the hung activation returned early: %v", err)
	default:
	}
	// A newer activation of cache supersedes the hung one too.
	other := f.a
	if f.serving(t) == "cache-A" {
		other = f.b
	}
	if _, err := f.mgr.Activate(ctx, other.ID); err != nil || f.serving(t) != other.Name {
		t.Fatalf("activate %s: %v (serving %s)", other.Name, err, f.serving(t))
	}
	if err := <-done; !errors.Is(err, rollout.ErrSuperseded) {
		t.Fatalf("activation superseded by another: %v", err)
	}
}

// BenchmarkRollback measures a rollback of cache (two versions swapped
// back and forth) with no other operation in progress (idle, the
// baseline) and while a never-ending cache candidate is being checked
// (during-hung-push; the candidate is started, untimed, before each
// rollback, and superseded by it). Run with -benchtime=20x.
func BenchmarkRollback(b *testing.B) {
	f := newLanesFixture(b)
	ctx := context.Background()
	i := 0
	rollback := func(b *testing.B) {
		if _, err := f.mgr.RollbackTo(ctx, abi.KindCache, f.other(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			rollback(b)
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/rollback")
	})
	b.Run("during-hung-push", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			done := f.startHungPush(b)
			start := time.Now()
			rollback(b)
			total += time.Since(start)
			if err := <-done; !errors.Is(err, rollout.ErrSuperseded) {
				b.Fatalf("hung activation: %v", err)
			}
		}
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/rollback")
	})
}
