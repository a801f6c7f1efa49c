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
// also stops the watchdog. The loop budget must end the call by itself, or
// the garbage collection (and the whole process) never completes.
func TestRunawayDuringGarbageCollection(t *testing.T) {
	rt := testRuntime(t)
	v := loadGuest(t, rt, "loop", "stw", Spec{Name: "spinner-gc", Deadline: 20 * time.Millisecond,
		MinInstances: 1, MaxInstances: 2, AcquireTimeout: 10 * time.Second})
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	if _, err := e.Activate(abi.KindRoute, v); err != nil {
		t.Fatal(err)
	}
	gc := make(chan time.Duration, 1)
	go func() {
		time.Sleep(5 * time.Millisecond) // let the call start spinning
		s := time.Now()
		runtime.GC()
		gc <- time.Since(s)
	}()
	start := time.Now()
	_, r := e.Route(context.Background(), &abi.RouteRequest{Message: "hello"})
	elapsed := time.Since(start)
	if r.Outcome != OutcomeTimeout {
		t.Errorf("Outcome = %v, want timeout", r.Outcome)
	}
	select {
	case d := <-gc:
		t.Logf("runaway call returned after %v; the garbage collection took %v", elapsed, d)
	case <-time.After(30 * time.Second):
		t.Fatal("the garbage collection never completed: a spinning guest blocked stop-the-world")
	}
}
