package policy

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// TestHammerReplace: 64 goroutines decide while the route version is
// replaced 100 times. Every call must be answered by the policy (never a
// fallback), by a version that was active at some point during the call.
func TestHammerReplace(t *testing.T) {
	rt := testRuntime(t)
	// The swap logic is what is hammered, so the versions are a tiny
	// hand-assembled module that starts in microseconds even under -race;
	// TestHammerReplaceGoGuest does fewer swaps of the Go test guest.
	echo := encode(echoRouteModule())
	hammer(t, 100, func(i int, s Spec) *Version {
		s.Config = []byte(strconv.Itoa(i))
		v, err := rt.Load(context.Background(), s, echo)
		if err != nil {
			t.Fatal(err)
		}
		return v
	})
}

func TestHammerReplaceGoGuest(t *testing.T) {
	rt := testRuntime(t)
	hammer(t, 10, func(i int, s Spec) *Version {
		return loadGuest(t, rt, "ok", strconv.Itoa(i), s)
	})
}

func hammer(t *testing.T, replaces int, load func(i int, s Spec) *Version) {
	const callers = 64
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	// Generous limits: this test is about correctness under -race on a
	// busy machine, not about speed.
	spec := func(i int) Spec {
		return Spec{Name: "hammer", MinInstances: 1, MaxInstances: 8, Deadline: 10 * time.Second, AcquireTimeout: time.Minute}
	}

	// announced is raised before an activation, activated after it: a
	// call that starts after activated == a and ends before announced
	// exceeds b must be answered by a version in [a, b].
	var announced, activated atomic.Int64
	if err := e.Replace(abi.KindRoute, load(0, spec(0))); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls atomic.Int64
	errs := make(chan error, callers)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := abi.RouteRequest{Message: "hammer time"}
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := activated.Load()
				d, r := e.Route(context.Background(), &req)
				after := announced.Load()
				calls.Add(1)
				gen, err := strconv.ParseInt(d.Reason, 10, 64)
				if r.Outcome != OutcomeOK || err != nil || gen < before || gen > after {
					errs <- fmt.Errorf("outcome %v, reason %q, generations [%d, %d]", r.Outcome, d.Reason, before, after)
					return
				}
				// Leave the cores some room for the loads.
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	var old []*Version
	for i := 1; i <= replaces; i++ {
		v := load(i, spec(i))
		announced.Store(int64(i))
		prev, err := e.Activate(abi.KindRoute, v)
		if err != nil {
			t.Fatal(err)
		}
		activated.Store(int64(i))
		time.Sleep(5 * time.Millisecond)
		prev.Close()
		old = append(old, prev)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, v := range old {
		select {
		case <-v.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("a replaced version did not drain and close")
		}
	}
	t.Logf("%d decisions across %d replacements", calls.Load(), replaces)
}
