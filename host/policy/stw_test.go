package policy

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// TestRunawayDuringGarbageCollection: a guest spinning in compiled code
// cannot be preempted, so a stop-the-world pause that starts while it spins
// also stops the watchdog. The guard's budget runs out every slice and
// calls the host's refill function, where the pause completes: the
// garbage collection must end while the guest still spins, long before
// the call's 200 ms deadline (with the whole deadline's budget armed at
// once, it waited for the call to trap).
func TestRunawayDuringGarbageCollection(t *testing.T) {
	rt := testRuntime(t)
	const deadline = 200 * time.Millisecond
	v := loadGuest(t, rt, "loop", "stw", Spec{Name: "spinner-gc", Deadline: deadline,
		MinInstances: 1, MaxInstances: 2, AcquireTimeout: 10 * time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	if _, err := e.Activate(abi.KindRoute, v); err != nil {
		t.Fatal(err)
	}
	gcDone := make(chan time.Time, 1)
	var gcTook time.Duration
	go func() {
		time.Sleep(5 * time.Millisecond) // let the call start spinning
		s := time.Now()
		runtime.GC()
		gcTook = time.Since(s)
		gcDone <- time.Now()
	}()
	start := time.Now()
	_, r := e.Route(context.Background(), &abi.RouteRequest{Message: "hello"})
	returned := time.Now()
	if r.Outcome != OutcomeTimeout {
		t.Errorf("Outcome = %v, want timeout", r.Outcome)
	}
	select {
	case done := <-gcDone:
		t.Logf("runaway call returned after %v; the garbage collection took %v", returned.Sub(start), gcTook)
		if !done.Before(returned) {
			t.Errorf("the garbage collection ended %v after the runaway call returned: it waited for the guest", done.Sub(returned))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the garbage collection never completed: a spinning guest blocked stop-the-world")
	}
}

// TestBudgetSlicesRefill: a call that does more work than one budget
// slice but ends within its deadline gets its slices from the host's
// refill function and succeeds.
func TestBudgetSlicesRefill(t *testing.T) {
	rt := newRuntime(t, Options{Logger: discardLogger()})
	v := loadGuest(t, rt, "slow", "", Spec{Name: "slow", Deadline: 5 * time.Second, MinInstances: 1, AcquireTimeout: 10 * time.Second})
	before := rt.refills.Load()
	if _, err := v.Cache(context.Background(), &cacheReq); err != nil {
		t.Fatal(err)
	}
	// 2,000,000 loop iterations: at least 2e6/sliceBudget slices.
	if got := rt.refills.Load() - before; got < 2_000_000/sliceBudget {
		t.Errorf("%d refills for 2,000,000 iterations; want at least %d", got, 2_000_000/sliceBudget)
	}
}
