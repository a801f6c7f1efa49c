package policy

import (
	"context"
	"errors"

	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/guests"
	"github.com/wingman-app/wingate/sdk/abi"
)

// countingWriter counts the bytes written to the log.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// hostileCalls is how many calls each FailsAtCall module gets: more
// than hostileQuarantine, so that the calls after quarantine are seen.
const (
	hostileCalls      = 8
	hostileQuarantine = 5
)

// TestHostileModules loads every module of the hostile catalogue
// (host/internal/guests) and checks what the host does with it: refused
// at load with a *LoadError naming the phase or item; or every call
// answered with the fail-open fallback, the failure counted as its class
// (timeout, trap, invalid decision, memory quota), quarantine after
// QuarantineAfter failures, each call's own duration (the histogram's
// maximum) within a generous bound of twice the deadline plus a
// millisecond, and the log within the output quotas. The durations are
// logged; BenchmarkHostile has the precise figures. Both tiers: the
// compiled, and the interpreted a tiered start serves from.
func TestHostileModules(t *testing.T) {
	for _, tier := range tiers {
		t.Run(tier.name, func(t *testing.T) { testHostileModules(t, tier.opts) })
	}
}

func testHostileModules(t *testing.T, opts Options) {
	var logged countingWriter
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	rt := newRuntime(t, opts)
	ctx := context.Background()
	// Generous for a loaded 2-core machine: the figure to watch is
	// logged, and BenchmarkHostile measures it precisely.
	const deadline = 2 * time.Millisecond
	bound := 2*deadline + time.Millisecond + time.Second
	for _, m := range hostile() {
		t.Run(m.Name, func(t *testing.T) {
			before := logged.n.Load()
			start := time.Now()
			// A module whose class is not a timeout gets a deadline no
			// loaded machine reaches, so that its outcome is its class
			// (a call past its deadline is a timeout whatever it did:
			// under -race, a proc_exit's module close took over 2 ms).
			dl, bound := deadline, bound
			if m.Fails != guests.Timeout && m.Fails != guests.Stopped {
				dl = time.Second
				bound = 2*dl + time.Millisecond + time.Second
			}
			v, err := rt.Load(ctx, Spec{Name: m.Name, MinInstances: 1, MaxInstances: 2, Deadline: dl, AcquireTimeout: 20 * time.Second}, m.Wasm)
			loadTime := time.Since(start)
			if m.Want == guests.RefusedAtLoad {
				var le *LoadError
				if !errors.As(err, &le) || !strings.Contains(le.Item, m.Item) {
					t.Fatalf("load: %v; want a *LoadError naming %q", err, m.Item)
				}
				t.Logf("%s: refused in %v: %v", m.Class, loadTime.Round(time.Microsecond), err)
				if loadTime > DefaultInitTimeout+DefaultStartTimeout+10*time.Second {
					t.Errorf("refusal took %v", loadTime)
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer v.Close()
			e := NewEngine(EngineOptions{Logger: discardLogger(), QuarantineAfter: hostileQuarantine})
			if _, err := e.Activate(abi.KindCache, v); err != nil {
				t.Fatal(err)
			}
			var worst time.Duration
			for i := range hostileCalls {
				d, r := e.Cache(ctx, &cacheReq)
				worst = max(worst, r.Duration)
				if m.Want == guests.AnswersAtCall {
					if r.Outcome != OutcomeOK {
						t.Fatalf("call %d: outcome %v, want ok", i, r.Outcome)
					}
					continue
				}
				if d.Action != abi.CacheBypass || d.Key != "" {
					t.Fatalf("call %d: decision %+v, want the bypass fallback", i, d)
				}
				want := OutcomeFallback
				if i < hostileQuarantine {
					switch m.Fails {
					case guests.Timeout:
						want = OutcomeTimeout
					case guests.Trap:
						want = OutcomeTrap
					}
				}
				if m.Fails == guests.Stopped && i < hostileQuarantine && (r.Outcome == OutcomeTimeout || r.Outcome == OutcomeTrap) {
					want = r.Outcome
				}
				if r.Outcome != want {
					t.Fatalf("call %d: outcome %v, want %v", i, r.Outcome, want)
				}
			}
			if m.Want == guests.AnswersAtCall {
				return
			}
			s := v.Stats()
			l := e.List()
			if len(l) != 1 || !l[0].Quarantined {
				t.Errorf("not quarantined after %d failures: %+v", hostileQuarantine, l)
			}
			var counted int64
			switch m.Fails {
			case guests.Timeout:
				counted = s.Timeouts
			case guests.Trap:
				counted = s.Traps
			case guests.Stopped:
				counted = s.Timeouts + s.Traps
			case guests.Invalid, guests.Memory:
				counted = s.Failures
			}
			if counted != hostileQuarantine || s.Calls != hostileQuarantine {
				t.Errorf("stats %+v: want %d calls, all counted as %s", s, hostileQuarantine, m.Fails)
			}
			if m.Fails == guests.Memory && s.ForcedRecycles != hostileQuarantine {
				t.Errorf("forced recycles = %d, want %d", s.ForcedRecycles, hostileQuarantine)
			}
			if s.CallTime.Max > bound {
				t.Errorf("slowest call took %v (deadline %v)", s.CallTime.Max, deadline)
			}
			// The direct call names the class.
			if m.Fails == guests.Invalid || m.Fails == guests.Memory {
				want := ErrBadDecision
				if m.Fails == guests.Memory {
					want = ErrMemoryQuota
				}
				if _, err := v.Cache(ctx, &cacheReq); !errors.Is(err, want) {
					t.Errorf("direct call: %v, want %v", err, want)
				}
			}
			out := logged.n.Load() - before
			if m.Floods {
				if s.LogDropped == 0 {
					t.Errorf("a flood dropped nothing: %+v", s)
				}
				// The version's burst, a second's refill and the drop notice.
				if limit := int64(DefaultLogBurst + 4*DefaultLogBytesPerSecond + 1024); out > limit {
					t.Errorf("the log grew by %d bytes, over %d", out, limit)
				}
			}
			t.Logf("%s: slowest call %v against %v (engine's view incl. waiting for an instance: %v); log +%d bytes, %d dropped",
				m.Class, s.CallTime.Max.Round(time.Microsecond), deadline, worst.Round(time.Microsecond), out, s.LogDropped)
		})
	}
}

// TestHostileCatalogueCoversEveryClass keeps the catalogue honest: the
// issue's classes are all there.
func TestHostileCatalogueCoversEveryClass(t *testing.T) {
	have := map[string]guests.Module{}
	for _, m := range hostile() {
		if _, dup := have[m.Name]; dup {
			t.Errorf("duplicate module %s", m.Name)
		}
		have[m.Name] = m
	}
	for _, name := range []string{"call-tree", "deep-recursion", "start-loop", "start-recursion", "initialize-loop",
		"initialize-recursion", "init-loop", "log-flood", "stdout-flood", "stderr-flood", "memory-fill", "memory-copy",
		"data-50mb", "memory-grow", "global-key", "key-15mib", "tags-65536", "garbage-decision", "endless-loop", "trap",
		"result-out-of-range", "unknown-import", "wasi-path-open"} {
		if _, ok := have[name]; !ok {
			t.Errorf("the catalogue lacks %s", name)
		}
	}

}
