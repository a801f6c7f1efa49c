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
// within the cap, an initial memory of at most Options.MaxInitialPages
// (256 pages, 16 MiB) and data segments of at most Options.MaxDataBytes
// (8 MiB) in all; the spec's deadline must be at most Options.MaxDeadline
// (10 s). A refused module gets a *LoadError naming the export,
// import or section, what was expected and what was found. The module is
// then rewritten with the guard (below), compiled (through the on-disk
// compilation cache, shared by every version made from the same bytes)
// and its first instances are started, each step under its own deadline
// with the watchdog armed: the module's start section (which the rewrite
// turns into an export the host calls, since wazero would run it inside
// instantiation, before any deadline; Options.StartTimeout, 1 s), then
// _initialize, the minor version (the host accepts N and N−1), the kinds
// bit set, and wingate_init with the configuration bytes (each
// Options.InitTimeout, 2 s). A step that overruns, even one that returns
// by itself after its deadline, fails the load with a *LoadError naming
// it and wrapping ErrTimeout; the version is never created, so never
// activated. A version is warm before it can be activated.
//
// Options.Limits returns every limit with its default filled in, so that
// the policy directory loader and the push path apply and report the
// same values.
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
// # Tiered start
//
// Compiling a Go guest of a few MiB with wazero's optimising compiler
// takes seconds of CPU (the default policies' bundle, 2.4 MB of code:
// about 1.5 s on one core of the development machine, more under load);
// a server starting with an empty compilation cache could not answer
// until it was done. Under WithTieredStart, Load serves such a module
// from wazero's interpreter at once (preparing it for the interpreter
// takes a fraction of a second) and compiles it in the background, and
// every version of it moves to the compiled code when that is done
// (Version.promote), as a hot swap does: the compiled instances start
// first, then take the place of the idle interpreted ones in one step
// of the pool; calls in flight finish on the interpreted instance they
// hold, which is closed when released; no call fails or waits for the
// swap (TestPromotionServesEveryCall). The interpreted code is closed
// once nothing uses it. VersionStats.ExecTier says which tier new calls
// run on, and Version.Compiled is closed at the promotion.
//
// The compilations run one at a time (Options.TierWorkers), each on one
// goroutine in an OS thread whose nice value is raised to 10
// (priority_linux.go), so that a server already serving keeps its
// processors for requests; they go into the compilation cache, and the
// runtime notes there each module it has compiled (markCompiled), since
// wazero does not tell whether a module is in its cache: a tiered start
// of a module the notes name compiles it at once, from the cache, in a
// fraction of a second. A module whose start-up the interpreter cannot
// run within the start-up timeouts waits for its compiled code instead
// (TestInterpretedStartTimeoutCompiles): the interpreter is a shortcut,
// never a limit of its own.
//
// Both tiers run the same rewritten module with the same guard, limits
// and quotas, and the hostile tests run against both (tiers in
// tier_test.go). Two things differ on the interpreted tier. The watchdog
// cannot set the halt flag, which the interpreter would read in a data
// race with the write: a call past its deadline is stopped by
// cancelling the instance's context instead (instance.stopCall), which
// the interpreter checks at every loop iteration and function entry
// (wazero's close-on-context-done; it runs a goroutine per call, a
// microsecond against decisions of tens of microseconds there). And the
// interpreter has a call-stack ceiling of its own, 2,000 frames, which
// traps a recursion that deep before the guard's depth limit would. The
// interpreter is ordinary Go code, so a stop-the-world pause preempts it
// anywhere, not only at a refill.
//
// What the interpreted tier costs: decisions some 30 to 40 times slower
// (BenchmarkTierDecision, the bundle as policies.json serves it: cache
// 2.0 µs compiled, 62 µs interpreted; route 23 µs and 0.73 ms;
// compress of 40 messages 0.13 ms and 5.1 ms), still within the shipped
// deadlines; an instance's first call takes longer (compress, about
// 25 ms), and a call past its deadline is served the fallback as on the
// compiled tier. A quarantine earned while interpreted is lifted once
// the version runs compiled (Engine: binding.blocked), so that the
// compiled version is judged on its own calls. And heap: the
// interpreter's code takes about 45 bytes per byte of the module's code
// section, 106 MiB for the bundle, until the promotion closes it. With
// the three default policies in three modules that was 300 MiB, and a
// start peaked at 450 to 516 MiB resident with the garbage collector
// pinned against GOMEMLIMIT; in one module (plugins/bundle) a start
// peaks at about 290 MiB and is back under 100 MiB once compiled.
//
// # Bounded execution
//
// A guest cannot be allowed to spin, by a loop, a call tree, a recursion,
// a bulk memory instruction or a host call. wazero's built-in
// interruption (WithCloseOnContextDone) makes compiled code leave to Go
// at every loop iteration and function entry, about 1.3 µs on a decision
// that otherwise takes a fraction of that, and a per-call
// context.WithTimeout costs about 0.8 µs more. Instead, at load time
// every loop header gets
//
//	global.get $halt; global.get $budget; i64.eqz; i32.or
//	if; i32.const 0; call $refill; end
//	global.get $budget; i64.const 1; i64.sub; global.set $budget
//
// where $budget is a mutable i64 global the rewrite adds, the work the
// call may still do before it asks the host for more, $halt a mutable
// i32 only the host writes, and $refill a host function the rewrite
// imports (wingate_internal.refill; a guest importing from
// wingate_internal is refused at load); and every call that could start
// unbounded work (call_indirect, and call of a function that itself
// calls) is wrapped in
//
//	if $halt | ($budget < 8) | ($depth < d): call $refill(d)
//	$budget -= 8; $depth -= d; call f; $depth += d
//
// where $depth is the call depth the call may still take before it asks
// $refill for more (1,024 units at a time, depthStep, up to
// Options.MaxCallDepth, 16,384, where $refill traps), so that a
// recursion comes back to Go at least every 1,024 units as a loop does
// every slice, and d is 1 + f's locals / 4 (of the heaviest function for
// call_indirect), so that the limit bounds the stack a recursion holds
// and not only its frames: a recursive function with 2,000 live locals
// grew wazero's stack by 16 KB a frame.
// Calls of imports (the host bounds its own functions) and of leaf
// functions (no calls: they end by themselves or at a guarded loop, and
// add one frame) are left alone. An exponential call tree without a loop ran 7.1 s
// against a 2 ms deadline before calls were guarded; it now stops at the
// deadline. Unbounded recursion traps at the depth limit in about 2 ms,
// with 1.4 MB allocated, where wazero's own stack limit took 157 ms and
// 169 MB (its stack is a Go slice doubled up to about 100 MB;
// BenchmarkDeepRecursion). memory.fill and memory.copy become calls to
// two functions the rewrite appends, which check the whole range first
// (an out-of-bounds instruction traps before writing, as it does) and
// then work in chunks of 64 KiB inside a guarded loop, spending budget
// in proportion to the bytes: one memory.fill over a 64 MiB memory ran
// 27 ms past a 2 ms deadline in one instruction. The call guard, the
// chunks and the refill cost the default cache policy about 9% of its
// decision time against the loops-only guard (BenchmarkGuardPaired,
// from the medians of interleaved decisions through both guards:
// 8.6–9.3% over three runs, where the same guard trapping instead of
// calling the refill measured 6.3–7.2% in runs interleaved with them: a
// call in the check's cold path makes the compiler keep a loop's values
// in memory across it; BenchmarkGuard has every kind).
//
// The host arms the budget before each call with one slice of 2^17
// units (sliceBudget): about 130 µs of an empty loop, 16,384 guarded calls
// or 512 KiB of a bulk instruction. When the guest has spent it, the
// check calls $refill (hostRefill), which runs in Go: it ends the call
// (a trap, recorded as a timeout) when halt is set, when the deadline has
// passed by the clock, or when the call has had its whole budget (2
// units per nanosecond of the deadline, loopBudget; a depth shortfall is
// the depth trap), and otherwise gives another slice. The refill costs
// nothing on a normal decision: the default policies' decisions fit in
// one slice (BenchmarkGuard reports refills/op: 0 for route, under
// 0.0001 for cache, where the guest's own garbage collector now and
// then needs more; 0.005 for compress, whose decisions take 0.3 ms; a
// slice of 2^16 gave compress 0.23). One watchdog goroutine per Runtime wakes every 250 µs, finds the
// calls past their deadline (each instance publishes its deadline in an
// atomic before the call and clears it after) and sets their halt flag;
// the guest stops at its next loop iteration or guarded call. After 64
// scans in a row find nothing running it parks until the next call arms
// a deadline, so an idle server does not wake a thread 4,000 times a
// second (an idle wingate serve used 5.7% of a core, now 0.4%).
// (Zeroing the budget instead of a halt flag does not work: the guest
// writes it back every iteration and overwrites the zero.)
//
// The slices are what make the guard safe against the Go runtime itself:
// a goroutine in compiled guest code cannot be preempted, so a
// stop-the-world garbage collection that begins while a guest spins
// stops the watchdog and every other goroutine until the guest comes
// back to Go. With the whole deadline's budget armed at once, that was
// when the guest had spent it, which is CPU work, not wall time: with
// 16 concurrent hostile callers on a loaded 2-core machine, calls ran
// 0.25-1.4 s against a 2 ms deadline and a health probe stood still for
// up to 422 ms. Now the pause completes at the guest's next refill, one
// slice of work later, while the guest still spins
// (TestRunawayDuringGarbageCollection), and the refill's clock ends a
// guest at its deadline even when the watchdog has not run. A loop whose
// body does much work per iteration has longer slices (a unit is an
// iteration); the watchdog's flag stops it at its deadline.
//
// A call preempted at a refill (a stop-the-world pause preempts every
// goroutine) went to the back of the run queue, behind other callers'
// whole calls: calls of 30-275 ms against 2 ms. So at most GOMAXPROCS
// decision calls run at once (Runtime.enter); the others wait before
// their deadline is armed, in Go, where they can be preempted. More
// cannot run at once anyway. Start-up steps take no place: a candidate
// whose start section spins for its whole StartTimeout made a rollback
// wait that long for a place to start its instances. A call past its
// first slice also yields at every refill (runtime.Gosched), so the
// rest of the process runs between its slices, and takes a long place
// (Runtime.enterLong): at most GOMAXPROCS-1 such calls run at once. Go's
// scheduler reads the network only when a processor runs out of work
// (or from its monitor, every 10 ms), and a processor running a guest
// that yields never does: with a long call on every processor, a
// request's bytes (a health check's) waited 10-30 ms to be read. A call
// waiting for a long place gives its decision place back meanwhile;
// its deadline runs on. The default policies' decisions are far shorter
// than a slice and never take one. A guest that loops on host calls
// (wingate.log, fd_write) spends its time in them rather than in budget
// units, so a host call does the same once per 100 µs of the call's time
// (instance.hostCall): before it did, such a loop held a processor to
// its deadline without one refill, and health checks waited 16-60 ms.
// With both, 16 concurrent hostile callers on a 2-core machine at load
// 3 see calls of 4-12 ms and probe gaps of 5-9 ms (TestHostileConcurrent;
// at load 5, 18-39 ms and 12-30 ms: the operating system's time slices),
// except fat-recursion (a recursion of frames of 2,000 locals, which
// grows wazero's stack, a Go slice, by megabytes per call: 60-76 ms).
// BenchmarkHostile's slowest single calls are within 2 × the deadline +
// 1 ms but for fat-recursion (37 ms; mean 4.9 ms, as before slices) and
// an outlier of endless-loop (9.5 ms; mean 2.2 ms). A runaway is stopped within a
// watchdog tick of its deadline (BenchmarkRunawayStop). The guard costs
// one atomic store and swap of an instance-local word per call and
// about a nanosecond per loop iteration (BenchmarkLoopGuard).
//
// The host functions (wingate.log, and fd_write, which the host
// implements itself rather than through wazero's WASI) check the call's
// deadline on entry and end a call past it, so a guest calling the host
// in a loop stops at its deadline even when the watchdog is late, and
// they read no more guest memory than the output quotas allow (below).
//
// Every call that outlives its deadline is a timeout, whether the
// watchdog stopped it, it ran out of budget, or it returned by itself
// after the deadline: it is counted, discards the instance, and counts
// towards quarantine (TestLateReturnIsTimeout).
//
// # Pools
//
// Each version keeps one instance warm (Spec.MinInstances) and grows on
// demand to 4 × GOMAXPROCS, at least 8 (Spec.MaxInstances): instances
// are single-threaded, so more than a few per core only adds memory (an
// instance of the default policies' bundle holds about 3.4 MiB of linear
// memory; an idle server kept GOMAXPROCS of them per version, 20 MiB on
// two processors, before the minimum became one). Growth happens in the
// background (an instance starts in a few milliseconds); a caller waits
// for the first free instance, which a decision of microseconds releases
// sooner than a new one starts, bounded by its context and
// Spec.AcquireTimeout. Idle instances are a stack: the one
// released last is handed out first, which keeps as many instances as
// there are busy cores hot in the CPU caches (a queue rotating through
// every instance cost about 1 µs of CPU per request more under wrk at 100
// connections). Instances above the minimum, taken from the bottom, are
// closed when the pool has not run short for Options.IdleTimeout. An instance is
// thrown away after any trap, exit or timeout (its state is unknown), and
// recycled after DefaultRecycleCalls calls (routine) or once its memory
// passes DefaultRecycleMemory (forced: the call that left it there fails
// with ErrMemoryQuota, is served the fallback and counts towards
// quarantine, so a module that grows on every call is quarantined rather
// than recycled forever). Memory is capped per instance by
// Options.MemoryLimitPages (1,024 pages, 64 MiB).
//
// # Failure
//
// Every kind fails open (docs/design.md): cache bypasses, route answers the
// configured default tier, compress keeps the most recent messages that fit.
// A decision is checked before use (compress keep indexes in range and
// ascending, tokens covering the kept messages and within the budget; a
// cache lookup has a key; a route score in [0, 1]; a cache decision's
// key of at most Options.MaxKeyBytes, 512, and at most Options.MaxTags,
// 32, purge tags of at most Options.MaxTagBytes, 128, each, checked from
// the encoded bytes before the decoder allocates or the host copies). Failures are counted,
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
// tagged with the policy name and version digest, within two quotas: a
// call may write Options.LogBytesPerCall (4 KiB), and a version
// Options.LogBurst (16 KiB) refilled at Options.LogBytesPerSecond
// (1 KiB/s). Each line is charged its text, with every byte a handler
// may escape counted six times, plus 128 bytes for the line itself.
// Output over a quota is truncated before it is read, counted as dropped
// (VersionStats.LogDropped) and noted in the log once per 10 s; it never
// blocks the guest, which is told everything was written. One line holds
// at most 4,096 bytes, and fd_write takes at most 1,024 iovecs.
//
// # Resource figures
//
// Version.Stats, and so Engine.List, the admin API and wingate policy
// ls, report per version: calls, a histogram of call durations
// (CallBuckets, from 1 µs to 1 s), failures, timeouts and traps, routine
// and forced recycles, log bytes written and dropped, and memory pages
// (now, and the most an instance has had). An Observer that also
// implements ResourceObserver receives every call's duration and outcome
// and the guest output, for /metrics (host/observe).
//
// The hostile modules of host/internal/guests, one of each class of
// attack, are loaded and called by TestHostileModules.
//
// # Policies file
//
// policies.json (PoliciesFile) names, for each kind, the module, its
// configuration (any JSON value, whose raw bytes reach the guest's init)
// and optional limits. LoadDir loads and activates it; a missing file or
// module leaves the kind on its fallback, which serve reports as a
// warning and in /readyz, without failing.
package policy
