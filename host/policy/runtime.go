package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Defaults of Options and Spec.
const (
	// DefaultMemoryLimitPages caps each instance's linear memory at 64 MiB.
	DefaultMemoryLimitPages = 1024
	// DefaultRecycleCalls recycles an instance after this many calls, so
	// that a slow leak inside a guest never grows without bound.
	DefaultRecycleCalls = 100_000
	// DefaultRecycleMemory recycles an instance whose memory grew past
	// 32 MiB (a Go guest starts at about 2.3 MiB).
	DefaultRecycleMemory = 32 << 20
	// DefaultAcquireTimeout bounds the wait for an instance when the
	// caller's context has no earlier deadline.
	DefaultAcquireTimeout = 250 * time.Millisecond
	// DefaultStartTimeout bounds a module's start section, run as its
	// own phase of instance start-up. With DefaultInitTimeout, it is
	// what a module that never finishes starting costs a push before it
	// is refused: 500 ms keeps that refusal within a second through the
	// policy directory too (whose watcher adds about 200 ms), where a
	// shipped policy starts in 2.4-4 ms (BenchmarkInstanceStart).
	DefaultStartTimeout = 500 * time.Millisecond
	// DefaultInitTimeout bounds each of the two other phases of instance
	// start-up: _initialize (the Go runtime's start) and wingate_init
	// (the policy's init handler with its configuration).
	DefaultInitTimeout = 500 * time.Millisecond
	// DefaultMaxDeadline is the ceiling of a version's per-call deadline
	// (Spec.Deadline, deadline_ms): Load refuses a longer one.
	DefaultMaxDeadline = 10 * time.Second
	// DefaultMaxCallDepth bounds the nesting of guarded calls (calls into
	// functions that call others): deeper recursion traps at once instead
	// of growing wazero's stack, a Go slice that doubles up to about
	// 100 MB, copied at every step.
	DefaultMaxCallDepth = 16384
	// DefaultMaxInitialPages caps the initial memory a module declares:
	// 256 pages, 16 MiB (a Go guest starts at about 2.3 MiB). An instance
	// above DefaultRecycleMemory would be recycled after every call.
	DefaultMaxInitialPages = 256
	// DefaultMaxDataBytes caps the bytes of a module's data segments,
	// copied into every instance at start-up.
	DefaultMaxDataBytes = 8 << 20
	// DefaultLogBytesPerCall bounds what one call into a guest (a
	// decision, or a phase of start-up) may log through wingate.log,
	// stdout and stderr together; each line is charged its length plus
	// logLineCost. The rest is dropped and counted.
	DefaultLogBytesPerCall = 4 << 10
	// DefaultLogBytesPerSecond and DefaultLogBurst bound what one version
	// may log across calls and instances: a token bucket of
	// DefaultLogBurst bytes refilled at DefaultLogBytesPerSecond.
	DefaultLogBytesPerSecond = 1 << 10
	DefaultLogBurst          = 16 << 10
	// DefaultMaxKeyBytes, DefaultMaxTags and DefaultMaxTagBytes bound a
	// cache decision: its key (written to the cache store as is), the
	// number of its purge tags and the length of each. A decision over a
	// limit is invalid: the fallback is served and the failure counts
	// towards quarantine.
	DefaultMaxKeyBytes = 512
	DefaultMaxTags     = 32
	DefaultMaxTagBytes = 128
	// DefaultWatchdogTick is how often the watchdog looks for overruns; a
	// runaway guest is stopped at most one tick after its deadline.
	DefaultWatchdogTick = 250 * time.Microsecond
	// DefaultIdleTimeout shrinks a pool back to its minimum after a burst.
	DefaultIdleTimeout = 30 * time.Second
)

// DefaultDeadline returns the per-call deadline of kind when the policies
// file sets none: 2 ms for cache and route, 20 ms for compress.
func DefaultDeadline(k abi.Kind) time.Duration {
	if k == abi.KindCompress {
		return 20 * time.Millisecond
	}
	return 2 * time.Millisecond
}

// Options configure a Runtime. The zero value is usable.
type Options struct {
	// Logger receives load events and the guests' logs and output. Nil
	// discards them.
	Logger *slog.Logger
	// Observer receives instance events; nil is a no-op.
	Observer Observer
	// CacheDir holds compiled modules between runs. Empty: a "wingate"
	// directory under os.UserCacheDir (no disk cache if that fails);
	// "off": no disk cache.
	CacheDir string
	// MemoryLimitPages caps each instance's memory (64 KiB pages).
	// Zero: DefaultMemoryLimitPages.
	MemoryLimitPages uint32
	// WatchdogTick: zero means DefaultWatchdogTick.
	WatchdogTick time.Duration
	// IdleTimeout: instances above a version's minimum are closed after
	// the pool has not needed them for this long. Zero: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// StartTimeout and InitTimeout bound the phases of instance start-up
	// (see DefaultStartTimeout, DefaultInitTimeout). Zero: the defaults.
	StartTimeout, InitTimeout time.Duration
	// MaxCallDepth: zero means DefaultMaxCallDepth.
	MaxCallDepth uint32
	// MaxDeadline: zero means DefaultMaxDeadline.
	MaxDeadline time.Duration
	// MaxInitialPages and MaxDataBytes are checked at load. Zero: the
	// defaults.
	MaxInitialPages uint32
	MaxDataBytes    uint64
	// LogBytesPerCall, LogBytesPerSecond and LogBurst are the guest output
	// quotas. Zero: the defaults.
	LogBytesPerCall, LogBytesPerSecond, LogBurst int
	// MaxKeyBytes, MaxTags and MaxTagBytes bound cache decisions. Zero:
	// the defaults.
	MaxKeyBytes, MaxTags, MaxTagBytes int
	// TierWorkers bounds the background compilations of a tiered start
	// (WithTieredStart) running at once, each on one goroutine. Zero: 1.
	TierWorkers int

	// loopsOnly guards loop headers only, as before call sites were
	// guarded: for BenchmarkGuard alone.
	loopsOnly bool
	// interpretOnly loads every module on the interpreter and never
	// compiles it: for the tests and benchmarks of the interpreted tier.
	interpretOnly bool
}

// withDefaults fills in the zero fields of o.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p <= 0 {
			*p = d
		}
	}
	if o.MemoryLimitPages == 0 {
		o.MemoryLimitPages = DefaultMemoryLimitPages
	}
	def(&o.WatchdogTick, DefaultWatchdogTick)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.StartTimeout, DefaultStartTimeout)
	def(&o.InitTimeout, DefaultInitTimeout)
	def(&o.MaxDeadline, DefaultMaxDeadline)
	if o.MaxCallDepth == 0 {
		o.MaxCallDepth = DefaultMaxCallDepth
	}
	if o.MaxInitialPages == 0 {
		o.MaxInitialPages = min(DefaultMaxInitialPages, o.MemoryLimitPages)
	}
	if o.MaxDataBytes == 0 {
		o.MaxDataBytes = DefaultMaxDataBytes
	}
	defInt(&o.LogBytesPerCall, DefaultLogBytesPerCall)
	defInt(&o.LogBytesPerSecond, DefaultLogBytesPerSecond)
	defInt(&o.LogBurst, DefaultLogBurst)
	defInt(&o.MaxKeyBytes, DefaultMaxKeyBytes)
	defInt(&o.MaxTags, DefaultMaxTags)
	defInt(&o.MaxTagBytes, DefaultMaxTagBytes)
	defInt(&o.TierWorkers, 1)
	return o
}

// loadLimits are the checks and the guard of o at load.
func (o Options) loadLimits() loadLimits {
	return loadLimits{maxPages: o.MemoryLimitPages, maxInitialPages: o.MaxInitialPages, maxDataBytes: o.MaxDataBytes,
		guard: guardOptions{loopsOnly: o.loopsOnly, maxDepth: o.MaxCallDepth}}
}

// Limits returns the limits a runtime created with o applies, with every
// default filled in: what the policy directory loader and the push path
// report and check against.
func (o Options) Limits() Options {
	o = o.withDefaults()
	o.Logger, o.Observer = nil, nil
	return o
}

// Runtime compiles, validates and runs policy modules. It owns the wazero
// runtime, the compilation cache and the one watchdog goroutine that stops
// overrunning calls. It is safe for concurrent use.
type Runtime struct {
	wz       wazero.Runtime // the optimising compiler's
	features api.CoreFeatures
	cacheDir string // the compilation cache in use; empty: none
	log      *slog.Logger
	obs      Observer
	res      ResourceObserver // obs, when it also takes resource events
	maxPages uint32
	opts     Options // with defaults
	lim      loadLimits

	idleTimeout time.Duration

	mu       sync.Mutex
	live     map[*instance]struct{} // every instance, for the watchdog
	versions map[*Version]struct{}  // every open version, for shrinking
	modules  map[string]*compiledModule
	// preparing holds, for each module being prepared and compiled, a
	// channel closed when that is done (compile); prepares counts the
	// modules prepared.
	preparing map[string]chan struct{}
	prepares  atomic.Int64
	// idle lists modules no version references, oldest first, kept
	// compiled so that a rollback or a swap back to a recent version
	// costs only instance start-up; at most retainedModules are kept.
	idle []*compiledModule

	closed atomic.Bool
	// starting counts instances being started; Close waits for them,
	// since closing the wazero runtime under a running call is a race.
	// Added to under mu, and only while the runtime is open.
	starting sync.WaitGroup
	stop     chan struct{}
	done     chan struct{}

	// parked is set while the watchdog sleeps because nothing has run for
	// a while; arm wakes it through wake. See watchdog.
	parked atomic.Bool
	wake   chan struct{}
	// halted counts calls the watchdog stopped (the rest of the timeouts
	// were ended by the refill function's clock or the host functions',
	// or returned late); wakes counts the watchdog's wake-ups from
	// parking.
	halted atomic.Int64
	wakes  atomic.Int64
	// refills counts the budget slices given after a call's first
	// (hostRefill).
	refills atomic.Int64
	// The interpreter (tier.go), created on first use, and the tiered
	// start's background compilations: the queue, the workers running,
	// and the compilations and promotions not done yet (tierIdle is
	// closed when they reach zero). Under mu.
	interpOnce  sync.Once
	wzi         wazero.Runtime
	interpErr   error
	tierQueue   []*compiledModule
	tierWorkers int
	tierPending int
	tierIdle    chan struct{}
	// tierGate, when set (HoldCompilations), holds background
	// compilations until tierRelease closes it.
	tierGate    chan struct{}
	tierRelease func()

	// running holds a token for every decision call in flight, at most
	// GOMAXPROCS: see enter. Start-up steps take none: a candidate whose
	// start section spins to its deadline must not hold up the decisions
	// and the instance starts of a rollback.
	running chan struct{}
	// long holds a token for every decision call past its first budget
	// slice, at most GOMAXPROCS-1 (one on a single processor): see
	// hostRefill.
	long chan struct{}
}

// enter waits until fewer than GOMAXPROCS guest calls run, and takes a
// place; leave gives it back. A guest call, once its deadline is armed,
// should not wait for a processor: compiled guest code cannot be
// preempted except where the guard calls the host (hostRefill), and a
// call preempted there (a stop-the-world pause preempts every
// goroutine) went to the back of the run queue behind the other
// callers' whole calls: with 16 concurrent callers on 2 cores, calls ran
// for 30–275 ms against a 2 ms deadline. More guest calls than
// processors cannot run at once anyway; the callers wait here, before
// their deadline starts, in Go, where they can be preempted.
func (rt *Runtime) enter(in *instance) {
	rt.running <- struct{}{}
	in.decision, in.placed = true, true
}

// leave gives back the call's places: its decision place if it holds one
// and its long place if it took one.
func (rt *Runtime) leave(in *instance) {
	in.decision = false
	if in.long {
		in.long = false
		<-rt.long
	}
	if in.placed {
		in.placed = false
		<-rt.running
	}
}

// enterLong takes a long place for a call that has spent its first
// budget slice (see hostRefill). Guest code cannot be preempted, and the
// scheduler polls the network only when a processor runs out of work
// (or every 10 ms from its monitor): with a long guest call on every
// processor, a health check's bytes sat unread for 10-30 ms. So long
// calls keep one processor free of guest code. A call that must wait
// gives back its decision place meanwhile, so that the short decisions
// of other callers and policies go on, and takes one again after its
// long place. Its deadline runs on while it waits, and the wait ends
// there: the call then ends (a timeout) without running again. Without
// that bound, a call that had its long place queued for a decision place
// behind every newer caller's first slice, holding the long place that
// each of those then waited for: under 16 callers, a 10 ms call of bulk
// memory work ran 72-147 ms. The default policies' decisions never come
// here.
func (rt *Runtime) enterLong(in *instance) {
	select {
	case rt.long <- struct{}{}:
		in.long = true
		return
	default:
	}
	in.placed = false
	<-rt.running
	expired := in.deadlineTimer()
	select {
	case rt.long <- struct{}{}:
		in.long = true
	case <-expired:
		panic(errHostDeadline)
	}
	select {
	case rt.running <- struct{}{}:
		in.placed = true
	case <-expired:
		panic(errHostDeadline)
	}
	in.waitTimer.Stop()
	in.checkDeadline()
}

// NewRuntime creates a runtime and starts its watchdog. Close it when done.
func NewRuntime(ctx context.Context, opts Options) (*Runtime, error) {
	opts = opts.withDefaults()
	features := api.CoreFeaturesV2
	cfg := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(opts.MemoryLimitPages).
		WithCoreFeatures(features)
	cached := ""
	if dir := cacheDir(opts.CacheDir); dir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			opts.Logger.Warn("policy: compilation cache unavailable, compiling without it", "dir", dir, "err", err)
		} else {
			cfg = cfg.WithCompilationCache(cache)
			cached = dir
		}
	}
	rt := &Runtime{
		wz:       wazero.NewRuntimeWithConfig(ctx, cfg),
		features: features,
		cacheDir: cached,
		log:      opts.Logger,
		obs:      opts.Observer,
		maxPages: opts.MemoryLimitPages,
		opts:     opts,
		lim:      opts.loadLimits(),
		live:     map[*instance]struct{}{},
		versions: map[*Version]struct{}{},
		modules:  map[string]*compiledModule{},

		preparing: map[string]chan struct{}{},

		idleTimeout: opts.IdleTimeout,
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		wake:        make(chan struct{}, 1),
		running:     make(chan struct{}, runtime.GOMAXPROCS(0)),
		long:        make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
	}
	rt.res, _ = opts.Observer.(ResourceObserver)
	if err := instantiateHosts(ctx, rt.wz); err != nil {
		rt.wz.Close(ctx)
		return nil, err
	}
	go rt.watchdog(opts.WatchdogTick)
	go rt.janitor()
	return rt, nil
}

// instantiateHosts instantiates in r the host modules a guest may
// import: WASI as wazero has it, except fd_write (a bounded writer of
// the guest's stdout and stderr with the output quotas, hostFdWrite);
// wingate.log; and the guard's refill (instantiateInternal).
func instantiateHosts(ctx context.Context, r wazero.Runtime) error {
	wasi := r.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(wasi)
	wasi.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostFdWrite), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		WithParameterNames("fd", "iovs", "iovs_len", "result.nwritten").
		Export("fd_write")
	if _, err := wasi.Instantiate(ctx); err != nil {
		return fmt.Errorf("policy: instantiate WASI: %w", err)
	}
	_, err := r.NewHostModuleBuilder(abi.HostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostLog), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, nil).
		WithParameterNames("level", "ptr", "len").
		Export(abi.ImportLog).
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("policy: instantiate host module: %w", err)
	}
	if err := instantiateInternal(ctx, r); err != nil {
		return fmt.Errorf("policy: instantiate internal module: %w", err)
	}
	return nil
}

func cacheDir(opt string) string {
	switch opt {
	case "off":
		return ""
	case "":
		base, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(base, "wingate", "wazero")
	}
	return opt
}

// Close stops the watchdog and closes every module. Versions must not be
// used afterwards.
func (rt *Runtime) Close(ctx context.Context) error {
	rt.mu.Lock()
	if rt.closed.Swap(true) {
		rt.mu.Unlock()
		return nil
	}
	// Stop whatever runs (an instance starting in the background, a
	// runaway guest) at its next loop header, then wait for the starts.
	for in := range rt.live {
		if in.claimStop(math.MaxInt64) {
			in.stopCall()
		}
	}
	rt.mu.Unlock()
	// The starts, and a background compilation in progress (it cannot
	// be interrupted: at most one module's compilation); one held by
	// HoldCompilations gives up.
	rt.releaseCompilations()
	rt.starting.Wait()
	close(rt.stop)
	<-rt.done
	err := rt.wz.Close(ctx)
	rt.mu.Lock()
	wzi := rt.wzi
	rt.mu.Unlock()
	if wzi != nil {
		err = errors.Join(err, wzi.Close(ctx))
	}
	return err
}

// watchdog stops calls past their deadline: it flips the instance's
// deadline to stopped (so the caller knows to discard it) and then sets
// its halt flag, which the guest checks at every loop header (or, on the
// interpreted tier, cancels the instance's context: stopCall).
//
// It scans every tick while calls run, and parks after parkAfter scans
// that found none: an idle server should not wake a thread thousands of
// times a second. arm, which every call and start-up goes through, wakes
// it. The two sides publish before they look (parked, then the deadlines;
// the deadline, then parked), so either the watchdog sees the new
// deadline or the caller sees it parked.
func (rt *Runtime) watchdog(tick time.Duration) {
	defer close(rt.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	var batch []*instance
	idle := 0
	for {
		select {
		case <-rt.stop:
			return
		case <-t.C:
		}
		var armed bool
		if batch, armed = rt.scan(batch[:0]); armed {
			idle = 0
			continue
		}
		if idle++; idle < parkAfter {
			continue
		}
		idle = 0
		rt.parked.Store(true)
		if batch, armed = rt.scan(batch[:0]); armed {
			rt.parked.Store(false)
			continue
		}
		t.Stop()
		select {
		case <-rt.stop:
			return
		case <-rt.wake:
		}
		rt.parked.Store(false)
		rt.wakes.Add(1)
		t.Reset(tick)
	}
}

// parkAfter is how many empty scans in a row park the watchdog.
const parkAfter = 64

// scan halts the calls past their deadline and reports whether any
// instance has a deadline set. batch is scratch space, returned for reuse.
func (rt *Runtime) scan(batch []*instance) ([]*instance, bool) {
	now := nanotime()
	armed := false
	rt.mu.Lock()
	for in := range rt.live {
		if in.deadline.Load() != 0 {
			armed = true
		}
		if in.claimStop(now) {
			batch = append(batch, in)
		}
	}
	rt.mu.Unlock()
	for _, in := range batch {
		in.stopCall()
	}
	rt.halted.Add(int64(len(batch)))
	return batch, armed
}

// arm sets in's deadline to d from now and makes sure the watchdog is
// awake to enforce it. It returns now.
func (rt *Runtime) arm(in *instance, d time.Duration) int64 {
	now := nanotime()
	in.yielded = now
	in.deadline.Store(now + int64(d))
	if rt.parked.Load() {
		select {
		case rt.wake <- struct{}{}:
		default: // already woken
		}
	}
	return now
}

// janitor shrinks idle pools. It is separate from the watchdog so that
// closing modules can never delay stopping a runaway call.
func (rt *Runtime) janitor() {
	t := time.NewTicker(rt.idleTimeout / 4)
	defer t.Stop()
	var vs []*Version
	for {
		select {
		case <-rt.stop:
			return
		case <-t.C:
		}
		vs = vs[:0]
		rt.mu.Lock()
		for v := range rt.versions {
			vs = append(vs, v)
		}
		rt.mu.Unlock()
		now := nanotime()
		for _, v := range vs {
			v.shrink(now, int64(rt.idleTimeout))
		}
	}
}

// errRuntimeClosed: the runtime was closed.
var errRuntimeClosed = errors.New("policy: runtime closed")

// beginStart registers an instance start; false once the runtime is
// closed. A true return must be paired with rt.starting.Done.
func (rt *Runtime) beginStart() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed.Load() {
		return false
	}
	rt.starting.Add(1)
	return true
}

func (rt *Runtime) track(in *instance) {
	rt.mu.Lock()
	rt.live[in] = struct{}{}
	rt.mu.Unlock()
}

func (rt *Runtime) untrack(in *instance) {
	rt.mu.Lock()
	delete(rt.live, in)
	rt.mu.Unlock()
}

// Instances returns the number of live instances across all versions.
func (rt *Runtime) Instances() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.live)
}

// epoch anchors nanotime on the monotonic clock.
var epoch = time.Now()

// nanotime is monotonic nanoseconds since epoch; never 0 or negative
// after start-up, so 0 can mean "no call in flight".
func nanotime() int64 { return int64(time.Since(epoch)) + 1 }

// Spec describes one policy version to load.
type Spec struct {
	// Name is the policy's name from the policies file, used in logs,
	// metrics and attribution.
	Name string
	// Config is handed to the guest's init handler in every instance.
	Config []byte
	// Digest is the module's SHA-256 in hex (ModuleSHA256), when the
	// caller has computed it from these very bytes; empty: Load does.
	Digest string
	// Deadline is the per-call deadline; zero: DefaultDeadline of the kind
	// being decided.
	Deadline time.Duration
	// MinInstances are created at load and kept warm; zero: 1 (the pool
	// grows on demand, see Pools in the package documentation).
	MinInstances int
	// MaxInstances caps the pool; zero: 4 × GOMAXPROCS, at least 8.
	MaxInstances int
	// RecycleCalls and RecycleMemory: zero means the defaults.
	RecycleCalls  int
	RecycleMemory uint64
	// AcquireTimeout: zero means DefaultAcquireTimeout.
	AcquireTimeout time.Duration
}

// Digest returns the short digest that identifies a module's bytes: the
// first 12 hex digits of its SHA-256. It is Result.Version.
func Digest(wasm []byte) string { return ModuleSHA256(wasm)[:12] }

// ModuleSHA256 is the hex SHA-256 of a module's bytes. It hashes in
// slices of 256 KiB: the hash's assembly loop cannot be preempted, and
// one call over a 4 MiB module would hold up a garbage collection's
// stop-the-world, and so every request, for a few milliseconds.
func ModuleSHA256(wasm []byte) string {
	h := sha256.New()
	for len(wasm) > 0 {
		n := min(len(wasm), 256<<10)
		h.Write(wasm[:n])
		wasm = wasm[n:]
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CheckData refuses, with a *LimitError, a module whose data segments
// are over Options.MaxDataBytes, which Load would refuse too. It reads
// the bytes in place (nothing allocated in proportion to them), so that
// a push can refuse such a module before storing it. A malformed module
// passes: Load names its fault.
func (rt *Runtime) CheckData(wasm []byte) error {
	data, err := checkBounds(wasm)
	if err == nil && rt.lim.maxDataBytes > 0 && data > rt.lim.maxDataBytes {
		return &LimitError{Field: "data", Limit: float64(rt.lim.maxDataBytes), Unit: "bytes", Got: float64(data)}
	}
	return nil
}

// Load validates wasm against ABI v1 and the host's limits, rewrites it
// with the loop guard, compiles it (through the compilation cache) and
// warms spec.MinInstances instances, each initialised with spec.Config.
// The version is not active anywhere: pass it to Engine.Activate, or call
// it directly.
//
// # Errors
//
// A module that breaks the ABI or the limits, or whose first instance
// fails to start, is refused with a *LoadError naming the problem.
func (rt *Runtime) Load(ctx context.Context, spec Spec, wasm []byte) (*Version, error) {
	if rt.closed.Load() {
		return nil, errRuntimeClosed
	}
	if spec.Name == "" {
		spec.Name = "unnamed"
	}
	if spec.Deadline < 0 || spec.Deadline > rt.opts.MaxDeadline {
		return nil, &LoadError{Policy: spec.Name, Item: "deadline", Want: fmt.Sprintf("at most %v (Options.MaxDeadline)", rt.opts.MaxDeadline),
			Found: spec.Deadline.String()}
	}
	digest := spec.Digest
	if len(digest) < 12 {
		digest = Digest(wasm)
	}
	digest = digest[:12]
	// compile's references on the module and the code are this
	// call's; the version takes its own.
	mod, first, err := rt.compile(ctx, spec.Name, digest, wasm)
	if err != nil {
		return nil, err
	}
	// On the interpreted tier compile also counted this load among the
	// tiered start's pending work (so that AwaitCompiled cannot return
	// between the module's compilation and this version's promotion);
	// the count passes to the version's promotion, or is dropped.
	pending := first.tier == Interpreted && !rt.opts.interpretOnly
	defer func() {
		first.unuse()
		rt.releaseModule(mod)
		if pending {
			rt.mu.Lock()
			rt.pendingTier(-1)
			rt.mu.Unlock()
		}
	}()
	c := first
	v, err := rt.warm(ctx, spec, digest, mod, c)
	if err != nil && c.tier == Interpreted && !rt.opts.interpretOnly && errors.Is(err, ErrTimeout) {
		// The interpreter is a shortcut, not a limit of its own: a
		// module whose start-up it could not run within the timeouts
		// (a loaded machine, the race detector) gets the compiled code
		// the background compilation makes, and the same timeouts.
		rt.log.Warn("policy: the interpreter did not start the module in time: waiting for its compiled code", "policy", spec.Name, "version", digest, "err", err)
		rt.releaseCompilations() // held or not, this load now waits for them
		select {
		case <-mod.ready:
		case <-ctx.Done():
			return nil, err
		}
		rt.mu.Lock()
		c = mod.compiled
		rt.mu.Unlock()
		if c == nil {
			return nil, err
		}
		v, err = rt.warm(ctx, spec, digest, mod, c)
	}
	if err != nil {
		return nil, err
	}
	if c.tier == Interpreted && !rt.opts.interpretOnly {
		pending = false // awaitCompiled drops it
		go v.awaitCompiled(mod)
	}
	rt.log.Info("policy loaded", "policy", v.name, "version", v.digest, "kinds", kindNames(v.Kinds()), "instances", v.total.Load(), "exec_tier", c.tier.String())
	return v, nil
}

// warm creates a version of mod on c and starts its first instances:
// its minimum, or one on the interpreted tier, where each takes tens of
// milliseconds (calls that find none free grow the pool, and the
// promotion starts the compiled pool at its full minimum). The version
// takes references of its own on mod and c; on failure it is closed,
// which drops them.
func (rt *Runtime) warm(ctx context.Context, spec Spec, digest string, mod *compiledModule, c *code) (*Version, error) {
	rt.mu.Lock()
	mod.refs++ // the version's; the caller's stays
	c.use()
	rt.mu.Unlock()
	v := newVersion(rt, spec, digest, mod, c)
	first, err := v.newInstance(ctx)
	if err != nil {
		v.closeNow()
		return nil, err
	}
	v.kinds = first.kinds
	rt.mu.Lock()
	rt.versions[v] = struct{}{}
	rt.mu.Unlock()
	v.total.Add(1)
	v.put(first)
	warm := v.min
	if c.tier == Interpreted {
		warm = 1
	}
	for i := 1; i < warm; i++ {
		in, err := v.newInstance(ctx)
		if err != nil {
			v.closeNow()
			return nil, err
		}
		v.total.Add(1)
		v.put(in)
	}
	return v, nil
}

// compiledModule is a validated, rewritten and compiled module shared by
// every version loaded from the same bytes (a configuration change, a
// rollback, a shadow copy): refs counts those versions. A tiered start
// leaves it interpreted until its background compilation ends (tier.go):
// compiled is then set, ready closed, and interp closed once nothing
// uses it.
type compiledModule struct {
	rt       *Runtime
	digest   string
	compiled *code // nil until compiled
	interp   *code // a tiered start's interpreted code, until released
	prepared prepared
	refs     int
	// ready is closed when the background compilation ends, with
	// compiled set or compileErr; nil for a module compiled at load.
	ready      chan struct{}
	compileErr error
	// abandoned: no version used the module before it was compiled; it
	// left rt.modules and is not compiled.
	abandoned bool
}

// WithCompileWorkers returns ctx under which a Load that compiles its
// module (no compiled copy in memory or in the compilation cache)
// compiles the module's functions on n goroutines instead of one. The
// machine code is the same either way; only the time differs. A server
// starting up uses it, since it serves nothing until its policies are
// loaded; a candidate checked while serving compiles on one, leaving the
// other processors to requests.
func WithCompileWorkers(ctx context.Context, n int) context.Context {
	return experimental.WithCompilationWorkers(ctx, n)
}

// compile returns the shared compiled module for wasm, preparing and
// compiling it on first use, and the code a new version of it starts on
// (a reference taken for the version: code.use). Under a tiered start
// (WithTieredStart) a module the compilation cache does not hold is
// prepared for the interpreter and compiled in the background.
func (rt *Runtime) compile(ctx context.Context, name, digest string, wasm []byte) (*compiledModule, *code, error) {
	for {
		rt.mu.Lock()
		if m := rt.modules[digest]; m != nil {
			c := rt.shareLocked(m)
			rt.mu.Unlock()
			return m, c, nil
		}
		// Versions of one module loaded at once (the kinds of a bundle
		// at start-up) prepare and compile it once: the others wait.
		if wait := rt.preparing[digest]; wait != nil {
			rt.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, nil, &LoadError{Policy: name, Item: "module", Err: ctx.Err()}
			}
		}
		done := make(chan struct{})
		rt.preparing[digest] = done
		rt.mu.Unlock()
		m, c, err := rt.compileNew(ctx, name, digest, wasm)
		rt.mu.Lock()
		delete(rt.preparing, digest)
		rt.mu.Unlock()
		close(done)
		return m, c, err
	}
}

// compileNew prepares and compiles a module not in rt.modules (compile).
func (rt *Runtime) compileNew(ctx context.Context, name, digest string, wasm []byte) (*compiledModule, *code, error) {
	rt.prepares.Add(1)
	p, err := prepare(name, wasm, rt.lim)
	if err != nil {
		return nil, nil, err
	}
	m := &compiledModule{rt: rt, digest: digest, prepared: p, refs: 1}
	if rt.opts.interpretOnly || (tiered(ctx) && !rt.knownCompiled(p.wasm)) {
		err := rt.compileInterpreted(ctx, name, m)
		if err == nil {
			return rt.addModule(m, m.interp)
		}
		if rt.opts.interpretOnly {
			return nil, nil, err
		}
		rt.log.Warn("policy: the interpreter refused the module: compiling it now", "policy", name, "err", err)
	}
	compiled, err := rt.wz.CompileModule(ctx, p.wasm)
	if err != nil {
		return nil, nil, &LoadError{Policy: name, Item: "module", Err: fmt.Errorf("compile: %w", err)}
	}
	rt.markCompiled(p.wasm)
	m.prepared.wasm = nil // wazero keeps what it needs
	m.compiled = &code{tier: Compiled, wz: rt.wz, cm: compiled, m: m}
	return rt.addModule(m, m.compiled)
}

// shareLocked takes a version's reference on m and returns the code it
// starts on. rt.mu is held.
func (rt *Runtime) shareLocked(m *compiledModule) *code {
	if m.refs == 0 {
		rt.idle = slices.DeleteFunc(rt.idle, func(x *compiledModule) bool { return x == m })
	}
	m.refs++
	c := m.current()
	c.use()
	if c.tier == Interpreted && !rt.opts.interpretOnly {
		rt.pendingTier(1) // the caller's: see Load
	}
	return c
}

// addModule registers m, just compiled to c, unless the same module was
// compiled concurrently, in which case that one is shared and m closed.
// An interpreted module's compilation is queued.
func (rt *Runtime) addModule(m *compiledModule, c *code) (*compiledModule, *code, error) {
	rt.mu.Lock()
	if rt.closed.Load() {
		rt.mu.Unlock()
		c.cm.Close(context.Background())
		return nil, nil, errRuntimeClosed
	}
	if other := rt.modules[m.digest]; other != nil {
		oc := rt.shareLocked(other)
		rt.mu.Unlock()
		c.cm.Close(context.Background())
		return other, oc, nil
	}
	rt.modules[m.digest] = m
	c.use()
	if c.tier == Interpreted && !rt.opts.interpretOnly {
		rt.queueCompile(m)
		rt.pendingTier(1) // the caller's: see Load
	}
	rt.mu.Unlock()
	return m, c, nil
}

// retainedModules bounds the compiled modules kept without a version
// (each holds the module's machine code, a few MiB for a Go guest).
const retainedModules = 4

// releaseModule drops a version's reference to its compiled module. A
// module no version uses is kept compiled among the retainedModules most
// recently released, so swapping back to it (a rollback, versions that
// alternate) skips validation, rewriting and compilation. One not
// compiled yet (a tiered start's) is abandoned instead: its background
// compilation is skipped and its interpreted code closed.
func (rt *Runtime) releaseModule(m *compiledModule) {
	rt.mu.Lock()
	m.refs--
	var evict *compiledModule
	abandon := false
	if m.refs == 0 {
		if m.compiled == nil {
			m.abandoned, abandon = true, true
			delete(rt.modules, m.digest)
		} else {
			rt.idle = append(rt.idle, m)
			if len(rt.idle) > retainedModules {
				evict = rt.idle[0]
				rt.idle = rt.idle[1:]
				delete(rt.modules, evict.digest)
			}
		}
	}
	rt.mu.Unlock()
	if abandon {
		rt.releaseInterpreted(m)
	}
	if evict != nil {
		evict.compiled.cm.Close(context.Background())
	}
}

// defaults of a spec's pool sizes.
func poolSizes(spec Spec) (min, max int) {
	procs := runtime.GOMAXPROCS(0)
	min, max = spec.MinInstances, spec.MaxInstances
	if min <= 0 {
		min = 1
	}
	if max <= 0 {
		max = 4 * procs
		if max < 8 {
			max = 8
		}
	}
	if min > max {
		min = max
	}
	return min, max
}

// kindNames renders kinds for logs ("cache,route"); a []abi.Kind alone
// would be logged as bytes.
func kindNames(ks []abi.Kind) string {
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k.String())
	}
	return b.String()
}

// instantiateInternal instantiates the guard's host module
// (internalModule) in r.
func instantiateInternal(ctx context.Context, r wazero.Runtime) error {
	_, err := r.NewHostModuleBuilder(internalModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostRefill), []api.ValueType{api.ValueTypeI32}, nil).
		WithParameterNames("depth").
		Export(refillName).
		Instantiate(ctx)
	return err
}
