package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
)

// ExecTier is how a version's instances run: machine code from wazero's
// optimising compiler, or wazero's interpreter.
type ExecTier uint8

const (
	// Compiled: machine code. Compiling a Go guest of a few MiB takes
	// seconds of CPU (through the compilation cache, a fraction of a
	// second); its decisions are the fast ones.
	Compiled ExecTier = iota
	// Interpreted: wazero's interpreter, ready in a fraction of a second
	// but some 30 to 40 times slower per decision, and its code takes
	// about 45 bytes of heap per byte of the module's code section (some
	// 100 MiB for a Go guest). A version runs interpreted only from a
	// tiered start (WithTieredStart) until its module is compiled.
	Interpreted
)

func (t ExecTier) String() string {
	if t == Interpreted {
		return "interpreted"
	}
	return "compiled"
}

// code is a module prepared for one tier: what instances are made from.
type code struct {
	tier ExecTier
	wz   wazero.Runtime
	cm   wazero.CompiledModule
	m    *compiledModule
	// users counts, for interpreted code, the versions running on it and
	// the instances made from it; the last to go closes it once the
	// module has its compiled code (releaseInterpreted), which gives
	// its heap back.
	users atomic.Int64
}

// use takes a reference on interpreted code; compiled code lives as
// long as its module.
func (c *code) use() {
	if c.tier == Interpreted {
		c.users.Add(1)
	}
}

// unuse drops a reference taken by use.
func (c *code) unuse() {
	if c.tier == Interpreted && c.users.Add(-1) == 0 {
		c.m.rt.releaseInterpreted(c.m)
	}
}

type tieredKey struct{}

// WithTieredStart returns ctx under which a Load whose module is not
// compiled yet (neither in memory nor, as far as the runtime knows, in
// the compilation cache) serves at once from wazero's interpreter and
// compiles the module in the background: one compilation at a time
// (Options.TierWorkers), on one goroutine, in a thread of lowered
// scheduling priority, into the compilation cache. Each version on the
// module then moves to the compiled code as a hot swap does: the new
// instances are started first, then replace the idle interpreted ones
// in one step; calls in flight finish on their interpreted instance,
// which is closed when released. The interpreted code is closed once no
// version or instance uses it. A server starting up uses it: it is
// ready in a fraction of the compilation's time, with the decisions of
// its policies, at the cost of slower decisions and the interpreter's
// heap until the compilation ends (AwaitCompiled).
//
// The instances of both tiers run the same guarded module under the
// same limits; on the interpreted tier a call past its deadline is
// stopped by cancelling the instance's context (wazero's interpreter
// checks it at every loop iteration and function entry) rather than by
// the halt flag, which the interpreter cannot read without a data race.
func WithTieredStart(ctx context.Context) context.Context {
	return context.WithValue(ctx, tieredKey{}, true)
}

func tiered(ctx context.Context) bool {
	on, _ := ctx.Value(tieredKey{}).(bool)
	return on
}

// interpreter returns the runtime's interpreter, created on first use
// with the same host modules and limits as the compiler's.
func (rt *Runtime) interpreter(ctx context.Context) (wazero.Runtime, error) {
	rt.interpOnce.Do(func() {
		cfg := wazero.NewRuntimeConfigInterpreter().
			WithMemoryLimitPages(rt.opts.MemoryLimitPages).
			WithCoreFeatures(rt.features).
			WithCloseOnContextDone(true)
		r := wazero.NewRuntimeWithConfig(ctx, cfg)
		if err := instantiateHosts(ctx, r); err != nil {
			r.Close(ctx)
			rt.interpErr = err
			return
		}
		rt.mu.Lock()
		rt.wzi = r
		rt.mu.Unlock()
	})
	if rt.interpErr != nil {
		return nil, rt.interpErr
	}
	return rt.wzi, nil
}

// compileInterpreted compiles m for the interpreter (addModule then
// queues its compilation by the optimising compiler).
func (rt *Runtime) compileInterpreted(ctx context.Context, name string, m *compiledModule) error {
	wzi, err := rt.interpreter(ctx)
	if err != nil {
		return &LoadError{Policy: name, Item: "module", Err: fmt.Errorf("interpreter: %w", err)}
	}
	cm, err := wzi.CompileModule(ctx, m.prepared.wasm)
	if err != nil {
		return &LoadError{Policy: name, Item: "module", Err: fmt.Errorf("compile for the interpreter: %w", err)}
	}
	m.interp = &code{tier: Interpreted, wz: wzi, cm: cm, m: m}
	m.ready = make(chan struct{})
	return nil
}

// current is the code new versions of m start on: the compiled code
// when there is some, else the interpreted. rt.mu is held.
func (m *compiledModule) current() *code {
	if m.compiled != nil {
		return m.compiled
	}
	return m.interp
}

// queueCompile queues m's compilation, starting a worker when fewer
// than Options.TierWorkers run. rt.mu is held.
func (rt *Runtime) queueCompile(m *compiledModule) {
	rt.tierQueue = append(rt.tierQueue, m)
	rt.pendingTier(1)
	if rt.tierWorkers < rt.opts.TierWorkers {
		rt.tierWorkers++
		rt.starting.Add(1) // Close waits for the compilation in progress
		go rt.compileWorker()
	}
}

// pendingTier adds n to the count of compilations and promotions not
// done yet; AwaitCompiled waits for it to reach zero. rt.mu is held.
func (rt *Runtime) pendingTier(n int) {
	if rt.tierPending == 0 && n > 0 {
		rt.tierIdle = make(chan struct{})
	}
	rt.tierPending += n
	if rt.tierPending == 0 && rt.tierIdle != nil {
		close(rt.tierIdle)
	}
}

// Compiling reports whether background compilations or promotions of a
// tiered start are pending.
func (rt *Runtime) Compiling() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.tierPending > 0
}

// AwaitCompiled waits until every module a tiered start left on the
// interpreter is compiled (or failed to) and every version using it has
// moved to the compiled code, or ctx ends. It returns at once when
// nothing is pending.
func (rt *Runtime) AwaitCompiled(ctx context.Context) error {
	rt.mu.Lock()
	idle := rt.tierIdle
	pending := rt.tierPending
	rt.mu.Unlock()
	if pending == 0 || idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// compileWorker compiles queued modules one after the other, each on
// this goroutine alone, in an OS thread of its own whose scheduling
// priority is lowered (lowerThreadPriority): a server that is already
// serving from the interpreter keeps its processors for requests, and
// the compilation takes what is left. The goroutine ends with its
// thread locked, so that the thread ends too instead of going back to
// the pool with its lowered priority.
func (rt *Runtime) compileWorker() {
	defer rt.starting.Done()
	runtime.LockOSThread()
	lowerThreadPriority()
	ctx := WithCompileWorkers(context.Background(), 1)
	for {
		rt.mu.Lock()
		if len(rt.tierQueue) == 0 || rt.closed.Load() {
			for _, m := range rt.tierQueue { // closing: give up the rest
				m.compileErr = errRuntimeClosed
				close(m.ready)
				rt.pendingTier(-1)
			}
			rt.tierQueue = nil
			rt.tierWorkers--
			rt.mu.Unlock()
			return
		}
		m := rt.tierQueue[0]
		rt.tierQueue = rt.tierQueue[1:]
		abandoned, wasm, gate := m.abandoned, m.prepared.wasm, rt.tierGate
		rt.mu.Unlock()
		if gate != nil {
			<-gate
		}
		var (
			cm  wazero.CompiledModule
			err = errAbandoned
		)
		switch {
		case rt.closed.Load():
			err = errRuntimeClosed
		case !abandoned:
			cm, err = rt.wz.CompileModule(ctx, wasm)
		}
		if err == nil {
			rt.markCompiled(wasm)
		}
		rt.finishCompile(m, cm, err)
	}
}

// HoldCompilations holds the background compilations of a tiered start
// until release is called, the runtime closes or a load the interpreter
// could not start waits for the compiled code: a server starting up
// gives its processors to loading the policies on the interpreter, which
// is what it waits for to be ready, and compiles once it serves. Safe to
// call release more than once.
func (rt *Runtime) HoldCompilations() (release func()) {
	g := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(g) }) }
	rt.mu.Lock()
	rt.tierGate, rt.tierRelease = g, release
	rt.mu.Unlock()
	return release
}

// releaseCompilations releases the compilations HoldCompilations holds,
// if any.
func (rt *Runtime) releaseCompilations() {
	rt.mu.Lock()
	release := rt.tierRelease
	rt.mu.Unlock()
	if release != nil {
		release()
	}
}

// errAbandoned: no version used the module any more when its turn to
// compile came.
var errAbandoned = errors.New("policy: module no longer used")

// finishCompile records the outcome of m's compilation and wakes the
// versions waiting for it.
func (rt *Runtime) finishCompile(m *compiledModule, cm wazero.CompiledModule, err error) {
	rt.mu.Lock()
	switch {
	case err != nil:
		m.compileErr = err
	case m.abandoned:
		// Released while it compiled: the compilation cache has it now,
		// nothing here needs it.
		defer cm.Close(context.Background())
	default:
		m.compiled = &code{tier: Compiled, wz: rt.wz, cm: cm, m: m}
		m.prepared.wasm = nil
	}
	close(m.ready)
	rt.pendingTier(-1)
	rt.mu.Unlock()
	if err != nil && !errors.Is(err, errAbandoned) && !errors.Is(err, errRuntimeClosed) {
		rt.log.Error("policy: background compilation failed: the module's versions stay interpreted", "version", m.digest, "err", err)
	}
	if err == nil {
		rt.releaseInterpreted(m) // if nothing uses it any more
	}
}

// releaseInterpreted closes m's interpreted code once it has compiled
// code (or is abandoned) and nothing uses the interpreted code any more.
func (rt *Runtime) releaseInterpreted(m *compiledModule) {
	rt.mu.Lock()
	c := m.interp
	if c == nil || c.users.Load() != 0 || (m.compiled == nil && !m.abandoned) {
		rt.mu.Unlock()
		return
	}
	m.interp = nil
	if m.compiled == nil {
		m.prepared.wasm = nil
	}
	rt.mu.Unlock()
	c.cm.Close(context.Background())
	rt.log.Info("policy: interpreted code released", "version", m.digest)
}

// awaitCompiled moves v to its module's compiled code when the
// background compilation ends (promote), unless v closes first. It runs
// on its own goroutine, counted in the runtime's pending tier work.
func (v *Version) awaitCompiled(m *compiledModule) {
	defer func() {
		v.rt.mu.Lock()
		v.rt.pendingTier(-1)
		v.rt.mu.Unlock()
	}()
	select {
	case <-m.ready:
	case <-v.done:
		return
	}
	v.rt.mu.Lock()
	c := m.compiled
	v.rt.mu.Unlock()
	if c == nil {
		return
	}
	if err := v.promote(c); err != nil && !errors.Is(err, errRuntimeClosed) {
		v.log.Error("policy: move to compiled code failed: the version stays interpreted", "err", err)
	}
}

// promote moves v to c, as a hot swap does: as many instances as v has
// now (at least its minimum) are started on c first; then, in one step
// of the idle pool, they replace the idle instances of the old code and
// serve every call that begins from then on. Calls in flight finish on
// their old instance, which is closed when released (release), as is
// one started on the old code meanwhile. No call fails or waits for the
// swap. On any error v stays on its old code.
func (v *Version) promote(c *code) error {
	if !v.acquireRef() {
		return errRuntimeClosed
	}
	defer v.releaseRef()
	old := v.code.Load()
	if old == c {
		return nil
	}
	n := min(max(int(v.total.Load()), v.min), v.max)
	fresh := make([]*instance, 0, n)
	for range n {
		in, err := v.startInstance(context.Background(), c)
		if err != nil {
			for _, f := range fresh {
				v.rt.untrack(f)
				f.close()
			}
			return err
		}
		fresh = append(fresh, in)
	}
	v.mu.Lock()
	for _, in := range fresh {
		v.instances[in] = struct{}{}
	}
	v.mu.Unlock()
	v.total.Add(int32(n))
	v.code.Store(c)
	stale := v.idle.swap(fresh, v.outdated)
	for _, in := range stale {
		v.discard(in, "tier")
	}
	old.unuse()
	close(v.compiled)
	v.log.Info("policy: compiled code serving", "instances", n, "interpreted_closed", len(stale))
	return nil
}

// markerDir is where the runtime notes the modules it has compiled into
// the compilation cache dir, so that a tiered start knows which modules
// would come out of the cache in a fraction of a second rather than
// compile for seconds (wazero tells neither). Its name carries what
// wazero's own cache directory does (the wazero version, GOARCH, GOOS):
// a cache of another wazero starts empty, and so do its notes.
func markerDir(cacheDir string) string {
	if cacheDir == "" {
		return ""
	}
	return filepath.Join(cacheDir, "wingate-compiled-"+wazeroVersion()+"-"+runtime.GOARCH+"-"+runtime.GOOS)
}

// wazeroVersion is the version of the wazero module in the binary, as
// wazero itself finds it.
var wazeroVersion = sync.OnceValue(func() string {
	v := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if strings.Contains(d.Path, "github.com/tetratelabs/wazero") {
				v = d.Version
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	return v
})

func markerName(wasm []byte) string {
	h := sha256.Sum256(wasm)
	return hex.EncodeToString(h[:])
}

// knownCompiled reports whether the compilation cache holds the machine
// code of the prepared module wasm, as far as the notes say. A note
// without its cache entry (a cache emptied by hand) costs only the
// compilation a tiered start would have done in the background.
func (rt *Runtime) knownCompiled(wasm []byte) bool {
	dir := markerDir(rt.cacheDir)
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, markerName(wasm)))
	return err == nil
}

// markCompiled notes that the compilation cache holds wasm's machine
// code. Failing to is harmless: the next tiered start interprets first.
func (rt *Runtime) markCompiled(wasm []byte) {
	dir := markerDir(rt.cacheDir)
	if dir == "" || wasm == nil {
		return
	}
	p := filepath.Join(dir, markerName(wasm))
	if _, err := os.Stat(p); err == nil {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(p, nil, 0o644)
	}
}
