package policy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wingman-app/wingate/sdk/abi"
)

// deadlineStopped marks an instance the watchdog has stopped (or is about
// to): whatever its call returned, the instance is discarded.
const deadlineStopped = -1

// instance is one module instance. It serves one call at a time: the pool
// hands it to a single caller.
type instance struct {
	v      *Version
	code   *code // what mod was made from: its tier
	mod    api.Module
	mem    api.Memory
	buffer api.Function
	decide api.Function
	init   api.Function
	stop   api.MutableGlobal // budget: what the call may still do before it calls hostRefill
	halt   api.MutableGlobal // set to 1 to stop the call at its next loop iteration
	ctx    context.Context   // carries the instance to host functions
	// cancel cancels ctx: how a call on the interpreted tier is stopped
	// (stopCall); nil on the compiled tier.
	cancel context.CancelFunc
	kinds  uint32

	// deadline is 0 while idle, the monotonic deadline of the call in
	// flight, or deadlineStopped. The watchdog reads it concurrently.
	deadline atomic.Int64
	calls    atomic.Int64
	pages    atomic.Int64 // memory pages after the last call, for Stats

	clock int64 // the guest's monotonic clock, see nanotime

	stack   [2]uint64
	scratch []byte
	// bufPtr and bufCap describe the guest's input buffer as last returned
	// by wingate_buffer(bufCap); it stays valid until the next call to
	// wingate_buffer, which the host makes only for a larger input.
	bufPtr, bufCap uint32
	out            *guestWriter
	errw           *guestWriter
	// logLeft is what the call in flight may still log (bytes, see
	// grant); set when the call is armed.
	logLeft int
	// elapsed is the duration of the last decision call, for finish.
	elapsed int64
	// depth is the guard's depth global: the call depth the call in
	// flight may still take before it must ask the refill function for
	// more (depthStep at a time). depthStart is its value between calls,
	// depthGranted the depth granted to the call in flight so far.
	depth                    api.MutableGlobal
	depthStart, depthGranted uint32

	// granted is the budget the call in flight has been given so far
	// (slices, see hostRefill), ceiling the most it may be given
	// (loopBudget of its deadline).
	granted, ceiling uint64
	// decision is set for the length of a decision call (Runtime.enter to
	// leave; start-up steps take no place), placed while it holds a
	// decision place (it gives it back while it waits for a long place),
	// long while it holds a long place (Runtime.enterLong).
	decision, placed, long bool
	// waitTimer ends a wait for a long place at the call's deadline.
	waitTimer *time.Timer
	// yielded is when the call in flight last gave way in a host call
	// (hostCall), or began.
	yielded int64
}

// armBudget arms the guard's budget for a call with deadline d: the
// first slice of it, or with the loops-only guard (which has no refill)
// the whole of it.
func (in *instance) armBudget(d time.Duration) {
	in.ceiling = loopBudget(d)
	if in.v.rt.opts.loopsOnly {
		in.granted = in.ceiling
	} else {
		in.granted = min(sliceBudget, in.ceiling)
	}
	in.stop.Set(in.granted)
	if in.depth != nil && in.depthGranted != in.depthStart {
		// A call that returned has given back all the depth it took.
		in.depth.Set(uint64(in.depthStart))
		in.depthGranted = in.depthStart
	}
}

// depthStep is the call depth the guard's depth global holds at a time:
// a call that goes this much deeper than where its last refill left it
// calls the refill function again, which grants the next step up to
// Options.MaxCallDepth. A recursion then reaches Go (the refill reads
// the clock, and a garbage collection waiting to scan the guest's
// goroutine can) every step: with the whole depth granted at once, a
// recursion without loops came back to Go only when wazero grew its
// stack, and under 16 callers its calls ran 40-87 ms against a 10 ms
// deadline while the collector spun trying to stop it.
const depthStep = 1024

// Errors of the refill function: errBudgetSpent is a timeout (as is
// checkDeadline's errHostDeadline); errDepthSpent is classified by
// callErr (the depth limit).
var (
	errBudgetSpent = fmt.Errorf("%w: budget spent", ErrTimeout)
	errDepthSpent  = errors.New("call depth spent")
)

// hostRefill is wingate_internal.refill(depth), which the guard calls
// when the halt flag is set or the budget has less left than the check
// takes (and, at a call site, when the depth left is short of depth). It
// runs in Go, so a stop-the-world pause waiting for the guest's thread
// completes here, at the latest one slice of guest work after it began.
// It ends the call (a panic wazero turns into the call's error) when
// halted or past the deadline by the clock, out of depth or out of the
// call's whole budget, and otherwise gives the guest another slice.
func hostRefill(ctx context.Context, _ api.Module, stack []uint64) {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	if in == nil {
		panic(errBudgetSpent) // a module outside a Runtime: no refill
	}
	// Whoever sets halt (the watchdog, Runtime.Close) has claimed the
	// deadline first (claimStop), so the deadline word tells: reading
	// halt here would race with their write.
	in.checkDeadline()
	rt := in.v.rt
	grant := true
	if need := uint32(stack[0]); need > 0 && in.depth != nil {
		if left := uint32(in.depth.Get()); left < need {
			// Short of depth: the next step, within the limit.
			inUse := in.depthGranted - left
			step := min(max(depthStep, need), rt.opts.MaxCallDepth-min(inUse, rt.opts.MaxCallDepth))
			if step < need {
				panic(errDepthSpent)
			}
			in.depth.Set(uint64(step))
			in.depthGranted = inUse + step
			// A refill for depth alone leaves the budget as it is.
			// (Halt is not read here: the watchdog writes it, and a
			// halt set since checkDeadline brings the guest back.)
			grant = in.stop.Get() < maxCharge
		}
	}
	if grant {
		if in.granted >= in.ceiling {
			panic(errBudgetSpent)
		}
		slice := min(sliceBudget, in.ceiling-in.granted)
		in.granted += slice
		in.stop.Set(slice)
	}
	rt.refills.Add(1)
	if in.decision && !in.long {
		rt.enterLong(in)
	}
	// A call this long gives way: every other runnable goroutine (a
	// health check, a request's parsing, a cheap decision) runs before
	// the next slice, instead of waiting for the scheduler to preempt a
	// guest it cannot see into. A decision of the default policies never
	// reaches a refill.
	runtime.Gosched()
}

type instanceKey struct{}

// nanotime is the guest's monotonic clock: deterministic, advancing one
// nanosecond per reading. wazero's default fake clock advances a
// millisecond per reading, which makes a Go guest's runtime believe that
// seconds pass within a few thousand calls and run its periodic work
// (forced GC, scavenging) far too often. Only the instance's own calling
// goroutine reads it.
func (in *instance) nanotime() int64 {
	in.clock++
	return in.clock
}

// hostLog is wingate.log(level, ptr, len): the guest's log call. The
// message is cut to what the call's output quota allows before it is
// read, so a huge length costs no more than a short one.
func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	if in == nil {
		return
	}
	in.hostCall()
	level, ptr, size := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	n := min(size, maxLogLine, uint32(max(in.logLeft-logLineCost, 0)))
	in.drop(int(size - n))
	if n == 0 {
		return
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		return
	}
	in.emit(in.v.log, slog.Level(level), b)
}

// errHostDeadline ends a host call made after the guest's deadline.
var errHostDeadline = fmt.Errorf("%w: host call after the deadline", ErrTimeout)

// checkDeadline ends the guest's call from inside a host function when
// its deadline has passed, so that a guest calling the host in a loop
// stops at its deadline even when the watchdog is late. wazero turns
// the panic into the call's error.
func (in *instance) checkDeadline() {
	if d := in.deadline.Load(); d == deadlineStopped || (d > 0 && nanotime() > d) {
		panic(errHostDeadline)
	}
}

// deadlineTimer returns a channel that receives once the call's
// deadline has passed (at once for a call already past it or stopped),
// from the instance's one timer.
func (in *instance) deadlineTimer() <-chan time.Time {
	left := time.Duration(1)
	if d := in.deadline.Load(); d != deadlineStopped && d > 0 {
		left = max(time.Duration(d-nanotime())+time.Microsecond, 1)
	}
	if in.waitTimer == nil {
		in.waitTimer = time.NewTimer(left)
	} else {
		in.waitTimer.Reset(left)
	}
	return in.waitTimer.C
}

// hostSlice is how long a call may spend before a host call gives way
// as a budget refill does (hostCall): about a refill slice's time.
const hostSlice = int64(100 * time.Microsecond)

// hostCall begins a host call from the guest (wingate.log, fd_write): it
// ends a call past its deadline and, once per hostSlice of the call's
// time, does what a budget refill does: takes a long place (a decision
// call) and yields. A guest that loops on host calls spends its time in
// them, not in budget units: a loop of log calls reached its deadline
// without one refill, held a processor for all of it, and a health
// check's bytes waited 16-60 ms to be read.
func (in *instance) hostCall() {
	now := nanotime()
	if d := in.deadline.Load(); d == deadlineStopped || (d > 0 && now > d) {
		panic(errHostDeadline)
	}
	if now-in.yielded < hostSlice {
		return
	}
	in.yielded = now
	if in.decision && !in.long {
		in.v.rt.enterLong(in)
	}
	runtime.Gosched()
}

// maxLogLine bounds one guest log message or output line.
const maxLogLine = 4096

// logLineCost is what a log line costs against the output quotas on top
// of its text: about what the handler adds (time, level, policy and
// version), so that a flood of one-byte lines is bounded too.
const logLineCost = 128

// logByteCost is what one byte of guest text may become in the log: a
// handler escapes quotes, backslashes, control bytes and invalid UTF-8
// (up to six bytes each: \u0000).
func logByteCost(c byte) int {
	if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
		return 6
	}
	return 1
}

// emit logs the longest prefix of b the call's and the version's output
// quotas allow, charging its cost, and counts the rest as dropped.
func (in *instance) emit(log *slog.Logger, level slog.Level, b []byte) {
	want := logLineCost
	for _, c := range b {
		want += logByteCost(c)
	}
	got := 0
	if allow := min(want, in.logLeft); allow > logLineCost {
		got = in.v.logBucket.take(allow, nanotime())
	}
	in.logLeft -= got
	n, cost := 0, logLineCost
	for n < len(b) && cost+logByteCost(b[n]) <= got {
		cost += logByteCost(b[n])
		n++
	}
	in.drop(len(b) - n)
	if n == 0 {
		return
	}
	in.v.logWritten.Add(int64(n))
	if r := in.v.rt.res; r != nil {
		r.GuestOutput(in.v.name, in.v.digest, n, 0)
	}
	log.Log(context.Background(), level, string(b[:n]))
}

// drop counts n bytes of guest output the quotas dropped.
func (in *instance) drop(n int) {
	if n <= 0 {
		return
	}
	in.v.logDropped.Add(int64(n))
	if r := in.v.rt.res; r != nil {
		r.GuestOutput(in.v.name, in.v.digest, 0, n)
	}
	in.v.noteDropped()
}

// WASI errno values hostFdWrite returns.
const (
	errnoBadf  = 8
	errnoFault = 21
	errnoInval = 28
)

// maxIovs bounds the iovecs of one fd_write (Linux's IOV_MAX).
const maxIovs = 1024

// hostFdWrite is WASI fd_write(fd, iovs, iovs_len, result.nwritten) for
// the guest's stdout (fd 1) and stderr (fd 2), which become log lines at
// info and warn level within the output quotas. It never blocks and
// never reads more than the quotas grant: the guest is told everything
// was written, and what the quotas refused is counted as dropped. Other
// descriptors are EBADF.
func hostFdWrite(ctx context.Context, mod api.Module, stack []uint64) {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	fd, iovs, n, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	var w *guestWriter
	switch {
	case in == nil:
	case fd == 1:
		w = in.out
	case fd == 2:
		w = in.errw
	}
	if w == nil {
		stack[0] = errnoBadf
		return
	}
	in.hostCall()
	if n > maxIovs {
		stack[0] = errnoInval
		return
	}
	mem := mod.Memory()
	vec, ok := mem.Read(iovs, n*8)
	if !ok {
		stack[0] = errnoFault
		return
	}
	total, errno := writeIovecs(in, w, mem, vec)
	if errno != 0 {
		stack[0] = errno
		return
	}
	if !mem.WriteUint32Le(result, total) {
		stack[0] = errnoFault
		return
	}
	stack[0] = 0
}

// writeIovecs writes the buffers the iovecs in vec (8 bytes each: offset,
// length) describe to w, each cut to the call's output quota before it is
// read, and returns the bytes the guest asked to write, or EFAULT when a
// buffer lies outside mem (every iovec is checked before any is written).
func writeIovecs(in *instance, w *guestWriter, mem memoryReader, vec []byte) (uint32, uint64) {
	for i := 0; i+8 <= len(vec); i += 8 {
		if _, ok := mem.Read(binary.LittleEndian.Uint32(vec[i:]), binary.LittleEndian.Uint32(vec[i+4:])); !ok {
			return 0, errnoFault
		}
	}
	var total uint32
	for i := 0; i+8 <= len(vec); i += 8 {
		off := binary.LittleEndian.Uint32(vec[i:])
		size := binary.LittleEndian.Uint32(vec[i+4:])
		total += size
		keep := min(size, uint32(max(in.logLeft-logLineCost, 0)))
		in.drop(int(size - keep))
		if keep == 0 {
			continue
		}
		b, _ := mem.Read(off, keep)
		w.write(in, b)
	}
	return total, 0
}

// guestWriter turns a guest's stdout or stderr into log lines.
type guestWriter struct {
	log   *slog.Logger
	level slog.Level
	buf   []byte
}

// write adds p, cut to the call's quota by the caller, to the current
// line and logs every line it completes as the quotas grant.
func (w *guestWriter) write(in *instance, p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(w.buf)+len(p) > maxLogLine {
				in.drop(len(w.buf) + len(p) - maxLogLine)
				p = p[:maxLogLine-len(w.buf)]
			}
			w.buf = append(w.buf, p...)
			return
		}
		w.buf = append(w.buf, p[:i]...)
		if len(w.buf) > maxLogLine {
			in.drop(len(w.buf) - maxLogLine)
			w.buf = w.buf[:maxLogLine]
		}
		in.emit(w.log, w.level, w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
}

// stopCall stops the call or start-up step in flight, once its deadline
// has been claimed (claimStop): compiled code sees the halt flag at its
// next loop header or guarded call; wazero's interpreter, which would
// read the flag in a data race with this write, sees the instance's
// context cancelled at its next loop iteration or function entry and
// closes the instance.
func (in *instance) stopCall() {
	if in.cancel != nil {
		in.cancel()
		return
	}
	in.halt.Set(1)
}

// close closes the instance's module and drops its reference on its
// code.
func (in *instance) close() {
	in.mod.Close(context.Background())
	if in.cancel != nil {
		in.cancel()
	}
	in.code.unuse()
}

// newInstance starts one instance on the version's current code.
func (v *Version) newInstance(ctx context.Context) (*instance, error) {
	return v.startInstance(ctx, v.code.Load())
}

// startInstance starts one instance of c: instantiate without start
// functions, register with the watchdog, run _initialize and the
// policy's init under the init deadline, check the ABI minor version and
// the kinds.
func (v *Version) startInstance(ctx context.Context, c *code) (*instance, error) {
	lerr := func(item, want, found string, err error) error {
		return &LoadError{Policy: v.name, Item: item, Want: want, Found: found, Err: err}
	}
	if !v.rt.beginStart() {
		return nil, lerr("module", "", "", errRuntimeClosed)
	}
	defer v.rt.starting.Done()
	in := &instance{v: v, code: c}
	in.ctx = context.WithValue(context.Background(), instanceKey{}, in)
	if c.tier == Interpreted {
		in.ctx, in.cancel = context.WithCancel(in.ctx)
	}
	in.out = &guestWriter{log: v.log, level: slog.LevelInfo}
	in.errw = &guestWriter{log: v.log, level: slog.LevelWarn}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithNanotime(in.nanotime, 1)
	c.use()
	mod, err := c.wz.InstantiateModule(experimental.WithMemoryAllocator(ctx, memoryAllocator), c.cm, cfg)
	if err != nil {
		if in.cancel != nil {
			in.cancel()
		}
		c.unuse()
		return nil, lerr("module", "", "", fmt.Errorf("instantiate: %w", err))
	}
	in.mod = mod
	in.mem = mod.Memory()
	in.buffer = mod.ExportedFunction(abi.ExportBuffer)
	in.decide = mod.ExportedFunction(abi.ExportDecide)
	in.init = mod.ExportedFunction(abi.ExportInit)
	g, ok := mod.ExportedGlobal(stopGlobalName).(api.MutableGlobal)
	h, hok := mod.ExportedGlobal(haltGlobalName).(api.MutableGlobal)
	if !ok || !hok || in.mem == nil || in.buffer == nil || in.decide == nil || in.init == nil {
		in.close()
		return nil, lerr("module", "ABI v1 exports", "missing after instantiation", nil)
	}
	in.stop, in.halt = g, h
	if d, ok := mod.ExportedGlobal(depthGlobalName).(api.MutableGlobal); ok {
		in.depth = d
		in.depthStart = uint32(d.Get())
		in.depthGranted = in.depthStart
	}
	v.rt.track(in)
	fail := func(err error) (*instance, error) {
		in.deadline.Store(0)
		v.rt.untrack(in)
		in.close()
		return nil, err
	}
	// phase runs one step of start-up under its own deadline, with the
	// watchdog armed: a step that overruns fails with ErrTimeout even
	// when it returns by itself.
	phase := func(item string, d time.Duration, call func() error) error {
		// Budget first, then the deadline: whoever stops the instance
		// (the watchdog, Runtime.Close) claims the deadline before
		// setting halt, so its write comes after these.
		in.armBudget(d)
		in.logLeft = v.rt.opts.LogBytesPerCall
		start := v.rt.arm(in, d)
		err := call()
		if in.deadline.Swap(0) == deadlineStopped || nanotime()-start > int64(d) {
			detail := "stopped at the deadline"
			if err == nil {
				detail = "returned after the deadline"
			}
			return lerr(item, fmt.Sprintf("to end within %v", d), detail, ErrTimeout)
		}
		if err != nil {
			return lerr(item, "", "", err)
		}
		return nil
	}
	opts := &v.rt.opts
	if v.start {
		if err := phase("start section", opts.StartTimeout, func() error {
			return in.callStack(mod.ExportedFunction(startExportName))
		}); err != nil {
			return fail(err)
		}
	}
	if v.initialize {
		if err := phase("export _initialize", opts.InitTimeout, func() error {
			return in.callStack(mod.ExportedFunction("_initialize"))
		}); err != nil {
			return fail(err)
		}
	}
	if err := phase("export "+abi.ExportMarker, opts.InitTimeout, func() error {
		return in.callStack(mod.ExportedFunction(abi.ExportMarker))
	}); err != nil {
		return fail(err)
	}
	if minor := int64(uint32(in.stack[0])); minor != abi.MinorVersion && minor != abi.MinorVersion-1 {
		want := fmt.Sprintf("minor version %d", abi.MinorVersion)
		if abi.MinorVersion > 0 {
			want = fmt.Sprintf("minor version %d or %d", abi.MinorVersion-1, abi.MinorVersion)
		}
		return fail(lerr("abi version", want, fmt.Sprintf("1.%d", minor), nil))
	}
	if err := phase("export "+abi.ExportKinds, opts.InitTimeout, func() error {
		return in.callStack(mod.ExportedFunction(abi.ExportKinds))
	}); err != nil {
		return fail(err)
	}
	in.kinds = uint32(in.stack[0])
	var known uint32
	for _, k := range abi.Kinds {
		known |= k.Bit()
	}
	if in.kinds == 0 || in.kinds&^known != 0 {
		return fail(lerr("export "+abi.ExportKinds, fmt.Sprintf("a non-empty subset of %#x", known),
			fmt.Sprintf("%#x (register handlers in init(): main is not run in a -buildmode=c-shared module)", in.kinds), nil))
	}
	var res []byte
	if err := phase("export "+abi.ExportInit, opts.InitTimeout, func() error {
		var err error
		res, err = in.invoke(in.init, 0, v.config)
		return err
	}); err != nil {
		return fail(err)
	}
	if len(res) == 0 || abi.Status(res[0]) != abi.StatusOK {
		msg := "empty result"
		if len(res) > 0 {
			msg = string(res[1:min(len(res), 513)])
		}
		return fail(lerr("init", "configuration accepted", "error: "+msg, nil))
	}
	in.pages.Store(int64(in.mem.Size() >> 16))
	v.created.Add(1)
	if o := v.rt.obs; o != nil {
		o.InstanceCreated(v.name, v.digest)
	}
	return in, nil
}

// claimStop marks the call or start in flight as stopped when its
// deadline is before now, and reports whether it did: then, and only
// then, may the caller set the halt flag (after the arming writes, which
// happen before the deadline is published).
func (in *instance) claimStop(now int64) bool {
	d := in.deadline.Load()
	return d > 0 && now > d && in.deadline.CompareAndSwap(d, deadlineStopped)
}

// callStack calls fn with the instance's stack holding its parameters.
func (in *instance) callStack(fn api.Function) error {
	if fn == nil {
		return errors.New("missing export")
	}
	if err := fn.CallWithStack(in.ctx, in.stack[:]); err != nil {
		return in.callErr(err)
	}
	return nil
}

// callErr classifies an error returned by a guest call.
func (in *instance) callErr(err error) error {
	// The refill function's timeouts carry ErrTimeout already. With the
	// loops-only guard (no refill), a budget below the largest charge
	// means the guard trapped for it.
	if errors.Is(err, ErrTimeout) {
		return err
	}
	if in.deadline.Load() == deadlineStopped || in.halt.Get() != 0 || (in.v.rt.opts.loopsOnly && in.stop.Get() <= maxCharge) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if errors.Is(err, errDepthSpent) {
		return fmt.Errorf("%w: call depth over %d: %w", ErrTrap, in.v.rt.opts.MaxCallDepth, err)
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%w: exit code %d", ErrTrap, exit.ExitCode())
	}
	return fmt.Errorf("%w: %w", ErrTrap, err)
}

// invoke copies payload into the guest's input buffer (asking for a larger
// one only when payload does not fit the current one) and calls fn (init with
// (len) or decide with (kind, len)); it returns a view of the guest's
// result payload, valid until the next call into the instance. The
// caller has set the deadline.
func (in *instance) invoke(fn api.Function, kind abi.Kind, payload []byte) ([]byte, error) {
	if uint64(len(payload)) > uint64(in.bufCap) || in.bufCap == 0 {
		size := max(len(payload), minInputBuffer)
		in.stack[0] = uint64(size)
		if err := in.buffer.CallWithStack(in.ctx, in.stack[:]); err != nil {
			return nil, in.callErr(err)
		}
		in.bufPtr, in.bufCap = uint32(in.stack[0]), uint32(size)
	}
	if !in.mem.Write(in.bufPtr, payload) {
		return nil, fmt.Errorf("%w: wingate_buffer returned %#x, outside memory for %d bytes", ErrBadDecision, in.bufPtr, len(payload))
	}
	if kind == 0 {
		in.stack[0] = uint64(len(payload))
	} else {
		in.stack[0] = uint64(kind)
		in.stack[1] = uint64(len(payload))
	}
	if err := fn.CallWithStack(in.ctx, in.stack[:]); err != nil {
		return nil, in.callErr(err)
	}
	return readResult(in.mem, in.stack[0])
}

// minInputBuffer is the smallest input buffer the host asks a guest for,
// so that most requests reuse the first one without a wingate_buffer call.
const minInputBuffer = 4096

// memoryReader is the part of api.Memory readResult needs.
type memoryReader interface {
	Read(offset, byteCount uint32) ([]byte, bool)
}

// readResult unpacks a packed result and returns a view of its payload.
func readResult(mem memoryReader, packed uint64) ([]byte, error) {
	ptr, size := abi.UnpackResult(packed)
	if size == 0 {
		return nil, fmt.Errorf("%w: empty result payload", ErrBadDecision)
	}
	if size > abi.MaxPayload {
		return nil, fmt.Errorf("%w: result of %d bytes over the %d limit", ErrBadDecision, size, abi.MaxPayload)
	}
	b, ok := mem.Read(ptr, size)
	if !ok {
		return nil, fmt.Errorf("%w: result [%#x, +%d) outside memory", ErrBadDecision, ptr, size)
	}
	return b, nil
}

// splitPayload separates a result payload's status from its body. An
// error status becomes ErrPolicy carrying the guest's message.
func splitPayload(p []byte) ([]byte, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: empty result payload", ErrBadDecision)
	}
	switch abi.Status(p[0]) {
	case abi.StatusOK:
		return p[1:], nil
	case abi.StatusError:
		msg := p[1:]
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return nil, fmt.Errorf("%w: %s", ErrPolicy, msg)
	}
	return nil, fmt.Errorf("%w: unknown status %d", ErrBadDecision, p[0])
}
