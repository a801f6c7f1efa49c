package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

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
	mod    api.Module
	mem    api.Memory
	buffer api.Function
	decide api.Function
	init   api.Function
	stop   api.MutableGlobal // loop budget: iterations the call may still run
	halt   api.MutableGlobal // set to 1 to stop the call at its next loop iteration
	ctx    context.Context   // carries the instance to host functions
	kinds  uint32

	// deadline is 0 while idle, the monotonic deadline of the call in
	// flight, or deadlineStopped. The watchdog reads it concurrently.
	deadline atomic.Int64
	calls    atomic.Int64

	clock int64 // the guest's monotonic clock, see nanotime

	stack   [2]uint64
	scratch []byte
	// bufPtr and bufCap describe the guest's input buffer as last returned
	// by wingate_buffer(bufCap); it stays valid until the next call to
	// wingate_buffer, which the host makes only for a larger input.
	bufPtr, bufCap uint32
	out            *guestWriter
	errw           *guestWriter
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

// hostLog is wingate.log(level, ptr, len): the guest's log call.
func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	if in == nil {
		return
	}
	level, ptr, size := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	if size > maxLogLine {
		size = maxLogLine
	}
	b, ok := mod.Memory().Read(ptr, size)
	if !ok {
		return
	}
	in.v.log.Log(context.Background(), slog.Level(level), string(b))
}

// maxLogLine bounds one guest log message or output line.
const maxLogLine = 4096

// guestWriter turns a guest's stdout or stderr into log lines.
type guestWriter struct {
	log   *slog.Logger
	level slog.Level
	buf   []byte
}

func (w *guestWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(w.buf)+len(p) > maxLogLine {
				p = p[:maxLogLine-len(w.buf)]
			}
			w.buf = append(w.buf, p...)
			break
		}
		w.buf = append(w.buf, p[:i]...)
		if len(w.buf) > maxLogLine {
			w.buf = w.buf[:maxLogLine]
		}
		w.log.Log(context.Background(), w.level, string(w.buf))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// newInstance starts one instance: instantiate without start functions,
// register with the watchdog, run _initialize and the policy's init under
// the init deadline, check the ABI minor version and the kinds.
func (v *Version) newInstance(ctx context.Context) (*instance, error) {
	lerr := func(item, want, found string, err error) error {
		return &LoadError{Policy: v.name, Item: item, Want: want, Found: found, Err: err}
	}
	if !v.rt.beginStart() {
		return nil, lerr("module", "", "", errRuntimeClosed)
	}
	defer v.rt.starting.Done()
	in := &instance{v: v}
	in.ctx = context.WithValue(context.Background(), instanceKey{}, in)
	in.out = &guestWriter{log: v.log, level: slog.LevelInfo}
	in.errw = &guestWriter{log: v.log, level: slog.LevelWarn}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStdout(in.out).WithStderr(in.errw).
		WithNanotime(in.nanotime, 1)
	mod, err := v.rt.wz.InstantiateModule(experimental.WithMemoryAllocator(ctx, memoryAllocator), v.compiled, cfg)
	if err != nil {
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
		mod.Close(ctx)
		return nil, lerr("module", "ABI v1 exports", "missing after instantiation", nil)
	}
	in.stop, in.halt = g, h
	v.rt.track(in)
	fail := func(err error) (*instance, error) {
		in.deadline.Store(0)
		v.rt.untrack(in)
		mod.Close(ctx)
		return nil, err
	}
	// Budget first, then the deadline: whoever stops the instance (the
	// watchdog, Runtime.Close) claims the deadline before zeroing the
	// budget, so its write comes after this one.
	in.stop.Set(loopBudget(DefaultInitTimeout))
	v.rt.arm(in, DefaultInitTimeout)
	if v.initialize {
		if _, err := mod.ExportedFunction("_initialize").Call(in.ctx); err != nil {
			return fail(lerr("export _initialize", "", "", in.callErr(err)))
		}
	}
	if err := in.callStack(mod.ExportedFunction(abi.ExportMarker)); err != nil {
		return fail(lerr("export "+abi.ExportMarker, "", "", err))
	}
	if minor := int64(uint32(in.stack[0])); minor != abi.MinorVersion && minor != abi.MinorVersion-1 {
		want := fmt.Sprintf("minor version %d", abi.MinorVersion)
		if abi.MinorVersion > 0 {
			want = fmt.Sprintf("minor version %d or %d", abi.MinorVersion-1, abi.MinorVersion)
		}
		return fail(lerr("abi version", want, fmt.Sprintf("1.%d", minor), nil))
	}
	if err := in.callStack(mod.ExportedFunction(abi.ExportKinds)); err != nil {
		return fail(lerr("export "+abi.ExportKinds, "", "", err))
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
	res, err := in.invoke(in.init, 0, v.config)
	if err != nil {
		return fail(lerr("export "+abi.ExportInit, "", "", err))
	}
	if len(res) == 0 || abi.Status(res[0]) != abi.StatusOK {
		msg := "empty result"
		if len(res) > 0 {
			msg = string(res[1:])
		}
		return fail(lerr("init", "configuration accepted", "error: "+msg, nil))
	}
	if in.deadline.Swap(0) == deadlineStopped {
		return fail(lerr("init", fmt.Sprintf("start-up within %v", DefaultInitTimeout), "stopped", ErrTimeout))
	}
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
	// A zero budget means the loop guard trapped: the watchdog stopped
	// the call, or the call used up its iterations by itself.
	if in.deadline.Load() == deadlineStopped || in.halt.Get() != 0 || in.stop.Get() == 0 {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
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
