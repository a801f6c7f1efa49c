// Package policy is Wingate's WebAssembly policy runtime: the only package
// that knows wazero. It loads policy modules written against ABI v1
// (sdk/abi, sdk/ABI.md), runs them in pools of warm instances under a
// per-call deadline and a memory cap, and serves decisions through Engine,
// which implements Decider and never fails.
//
// # Use
//
//	rt, _ := policy.NewRuntime(ctx, policy.Options{Logger: log})
//	defer rt.Close(ctx)
//	eng := policy.NewEngine(policy.EngineOptions{Logger: log})
//	defer eng.Close()
//	_, err := policy.LoadDir(ctx, rt, eng, "./policies") // policies.json
//
//	d, res := eng.Route(ctx, &abi.RouteRequest{Message: msg})
//	// res.Outcome says whether the policy answered or the fallback did.
//
// Operators' tools load a version without activating it, call it directly
// (shadow traffic, self-tests, offline evaluation) and switch:
//
//	v, err := rt.Load(ctx, policy.Spec{Name: "route", Config: cfg}, wasm) // validated, compiled, warm
//	d, err := v.Route(ctx, req)        // direct call: no fallback, *CallError on failure
//	prev, err := eng.Activate(abi.KindRoute, v) // atomic; calls in flight finish on prev
//	prev.Close()                       // closes once drained (or keep it for a rollback)
//	infos := eng.List()                // active versions with stats and quarantine state
//
// # Loading
//
// Runtime.Load reads the module with wabin and checks it before anything
// runs: the marker export wingate_abi_v1, every required export with its
// exact signature, imports only from module "wingate" (with exact
// signatures) and the WASI calls the Go runtime needs, a declared memory
// within the cap. A refused module gets a *LoadError naming the export,
// import or section, what was expected and what was found. The module is
// then rewritten with the loop guard, compiled (through the on-disk
// compilation cache, shared by every version made from the same bytes)
// and its first instances are started: _initialize, the minor version
// (the host accepts N and N−1), the kinds bit set, and wingate_init with
// the configuration bytes. A version is warm before it can be activated.
//
// # Starting instances
//
// Instance start-up is paid at every activation and every pool growth,
// and a guest's _initialize cannot be preempted, so it is kept short. Go's
// linker ends a data segment at every run of zeros, leaving a Go guest
// with some 37,000 of them, and wazero evaluates and copies each one,
// allocating, at every instantiation; the rewrite joins disjoint constant
// segments across gaps of up to 4 KiB (coalesceData: 37,646 became 1 for
// the cache policy). Linear memory is an anonymous mapping of the memory
// cap outside the Go heap (memory_unix.go): growing it is a longer view,
// not a copy, and closing an instance returns its pages to the system at
// once. Together these took an instance of the cache policy from 20 ms
// and 44,000 allocations to about 3 ms and 6,600 (BenchmarkInstanceStart).
// Laying the data in as a copy-on-write memory file was tried too: it
// started instances faster still, but moved the page-fault cost onto the
// first decisions and made the tail of a hot swap worse.
//
// # Bounded execution
//
// A guest cannot be allowed to spin. wazero's built-in interruption
// (WithCloseOnContextDone) makes compiled code leave to Go at every loop
// iteration and function entry, about 1.3 µs on a decision that otherwise
// takes a fraction of that, and a per-call context.WithTimeout costs
// about 0.8 µs more. Instead, at load time every loop header gets
//
//	global.get $halt; global.get $budget; i64.eqz; i32.or; if; unreachable; end
//	global.get $budget; i64.const 1; i64.sub; global.set $budget
//
// where $budget is a mutable i64 global the rewrite adds, the loop
// iterations the call may still run, and $halt a mutable i32 only the
// host writes. The host arms the budget before each call with 2
// iterations per nanosecond of the deadline (loopBudget). One watchdog
// goroutine per Runtime wakes every 250 µs, finds the calls past their
// deadline (each instance publishes its deadline in an atomic before the
// call and clears it after) and sets their halt flag; the guest traps at
// its next loop iteration. After 64 scans in a row find nothing running it
// parks until the next call arms a deadline, so an idle server does not
// wake a thread 4,000 times a second (an idle wingate serve used 5.7% of
// a core, now 0.4%). (Zeroing the budget instead does not work: the
// guest writes it back every iteration and overwrites the zero.) The count is what makes the guard safe
// against the Go runtime itself: a goroutine in compiled guest code cannot
// be preempted, so a stop-the-world garbage collection that begins while a
// guest spins also stops the watchdog; the spinning guest then exhausts its
// budget by itself and traps, and the pause completes
// (TestRunawayDuringGarbageCollection). The call costs one atomic store and swap of an
// instance-local word and about a nanosecond per loop iteration
// (BenchmarkLoopGuard); a runaway is stopped within a watchdog tick of
// its deadline (BenchmarkRunawayStop). Straight-line code ends by itself
// and unbounded recursion ends in a stack-overflow trap.
//
// # Pools
//
// Each version keeps at least GOMAXPROCS instances warm (Spec.MinInstances)
// and grows on demand to 4 × GOMAXPROCS, at least 8 (Spec.MaxInstances):
// instances are single-threaded, so more than a few per core only adds
// memory (a Go guest starts at about 2.3 MiB). Growth happens in the
// background; a caller waits for the first free instance, bounded by its
// context and Spec.AcquireTimeout. Idle instances are a stack: the one
// released last is handed out first, which keeps as many instances as
// there are busy cores hot in the CPU caches (a queue rotating through
// every instance cost about 1 µs of CPU per request more under wrk at 100
// connections). Instances above the minimum, taken from the bottom, are
// closed when the pool has not run short for Options.IdleTimeout. An instance is
// thrown away after any trap, exit or timeout (its state is unknown), and
// recycled after DefaultRecycleCalls calls or once its memory passes
// DefaultRecycleMemory, so a slow leak inside a guest stays bounded.
// Memory is capped per instance by Options.MemoryLimitPages.
//
// # Failure
//
// Every kind fails open (docs/design.md): cache bypasses, route answers the
// configured default tier, compress keeps the most recent messages that fit.
// A decision is checked before use (compress keep indexes in range and
// ascending, tokens covering the kept messages and within the budget; a
// cache lookup has a key; a route score in [0, 1]). Failures are counted,
// reported to the Observer and logged at most once per burst per active
// version; a version that fails QuarantineAfter calls in a row serves only
// the fallback until another is activated.
//
// # Sandbox
//
// Guests get no file system, network, arguments or environment. Their
// monotonic clock is deterministic and advances a nanosecond per reading
// (wazero's default fake clock advances a millisecond per reading, which
// makes a Go guest's runtime run its periodic work constantly); wall
// clock and randomness are wazero's deterministic fakes. Standard output,
// standard error and the SDK's log calls go to the injected *slog.Logger
// tagged with the policy name and version digest.
//
// # Policies file
//
// policies.json (PoliciesFile) names, for each kind, the module, its
// configuration (any JSON value, whose raw bytes reach the guest's init)
// and optional limits. LoadDir loads and activates it; a missing file or
// module leaves the kind on its fallback, which serve reports as a
// warning and in /readyz, without failing.
package policy
