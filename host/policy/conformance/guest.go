package conformance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wingman-app/wingate/sdk/abi"
)

// The raw harness: the module instantiated with plain wazero, so that the
// checks see every byte and every address the guest hands back (the host
// path, package policy, decodes and copies them). It has the host's
// imports (wingate.log, WASI without files, arguments or environment)
// and its memory cap; a call that runs past callTimeout is stopped.

const callTimeout = 60 * time.Second

// memoryLimitPages is the host's default cap (64 MiB).
const memoryLimitPages = 1024

type harness struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	n        int
}

func newHarness(ctx context.Context, wasm []byte) (*harness, error) {
	return newHarnessConfig(ctx, wasm, wazero.NewRuntimeConfig())
}

func newHarnessConfig(ctx context.Context, wasm []byte, cfg wazero.RuntimeConfig) (*harness, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, cfg.WithCloseOnContextDone(true).WithMemoryLimitPages(memoryLimitPages))
	_, err := rt.NewHostModuleBuilder(abi.HostModule).
		NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, level, ptr, size uint32) {}).Export(abi.ImportLog).
		Instantiate(ctx)
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	c, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return &harness{rt: rt, compiled: c}, nil
}

func (h *harness) Close(ctx context.Context) { h.rt.Close(ctx) }

// guest is one instance of the module.
type guest struct {
	mod                                 api.Module
	mem                                 api.Memory
	marker, kinds, buffer, init, decide api.Function
	bufAddr, bufSize                    uint32
	haveBuf                             bool
}

// errTrap marks a call that trapped or timed out.
var errTrap = errors.New("trapped")

func (h *harness) instance(ctx context.Context) (*guest, error) {
	h.n++
	cfg := wazero.NewModuleConfig().WithName(fmt.Sprintf("guest-%d", h.n)).WithStartFunctions()
	mod, err := h.rt.InstantiateModule(ctx, h.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	g := &guest{
		mod: mod, mem: mod.Memory(),
		marker: mod.ExportedFunction(abi.ExportMarker), kinds: mod.ExportedFunction(abi.ExportKinds),
		buffer: mod.ExportedFunction(abi.ExportBuffer), init: mod.ExportedFunction(abi.ExportInit),
		decide: mod.ExportedFunction(abi.ExportDecide),
	}
	if g.mem == nil || g.marker == nil || g.kinds == nil || g.buffer == nil || g.init == nil || g.decide == nil {
		mod.Close(ctx)
		return nil, errors.New("the module lacks an ABI v1 export or its memory (the host's load check names it)")
	}
	if f := mod.ExportedFunction("_initialize"); f != nil {
		if _, err := g.call(ctx, f, "_initialize()"); err != nil {
			mod.Close(ctx)
			return nil, err
		}
	}
	return g, nil
}

func (g *guest) Close(ctx context.Context) { g.mod.Close(ctx) }

func (g *guest) call(ctx context.Context, f api.Function, what string, args ...uint64) (uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := f.Call(cctx, args...)
	if err != nil {
		if cctx.Err() != nil {
			return 0, fmt.Errorf("%s %w: did not return within %v", what, errTrap, callTimeout)
		}
		return 0, fmt.Errorf("%s %w: %v", what, errTrap, err)
	}
	if len(res) == 0 { // _initialize; the others' signatures were checked at load
		return 0, nil
	}
	return res[0], nil
}

// askBuffer calls wingate_buffer(size) and checks that the range it
// returns lies inside memory.
func (g *guest) askBuffer(ctx context.Context, size uint32) (uint32, error) {
	v, err := g.call(ctx, g.buffer, fmt.Sprintf("wingate_buffer(%d)", size), uint64(size))
	if err != nil {
		return 0, err
	}
	p := uint32(v)
	if uint64(p)+uint64(size) > uint64(g.mem.Size()) {
		return 0, fmt.Errorf("wingate_buffer(%d) returned %#x: the range ends past memory (%d bytes)", size, p, g.mem.Size())
	}
	g.bufAddr, g.bufSize, g.haveBuf = p, size, true
	return p, nil
}

// write puts in into the input buffer the way the host does: asking for
// a buffer only when in does not fit the one it last asked for (at least
// 4,096 bytes).
func (g *guest) write(ctx context.Context, in []byte) error {
	if !g.haveBuf || uint32(len(in)) > g.bufSize {
		size := uint32(len(in))
		if size < 4096 {
			size = 4096
		}
		if _, err := g.askBuffer(ctx, size); err != nil {
			return err
		}
	}
	if !g.mem.Write(g.bufAddr, in) {
		return fmt.Errorf("input buffer %#x+%d is outside memory (%d bytes)", g.bufAddr, len(in), g.mem.Size())
	}
	return nil
}

// payload reads the packed result of an init or decide call and checks
// its range and status byte. It returns the status and the rest.
func (g *guest) payload(what string, packed uint64) (abi.Status, []byte, error) {
	ptr, n := abi.UnpackResult(packed)
	switch {
	case n == 0:
		return 0, nil, fmt.Errorf("%s returned an empty payload (%#x)", what, packed)
	case n > abi.MaxPayload:
		return 0, nil, fmt.Errorf("%s returned a payload of %d bytes, over the limit of %d", what, n, abi.MaxPayload)
	}
	b, ok := g.mem.Read(ptr, n)
	if !ok {
		return 0, nil, fmt.Errorf("%s returned payload %#x+%d, outside memory (%d bytes)", what, ptr, n, g.mem.Size())
	}
	out := append([]byte(nil), b...)
	st := abi.Status(out[0])
	if st != abi.StatusOK && st != abi.StatusError {
		return 0, nil, fmt.Errorf("%s returned status byte %d (want 0 ok or 1 error)", what, out[0])
	}
	return st, out[1:], nil
}

// initialize writes config and calls wingate_init.
func (g *guest) initialize(ctx context.Context, config []byte) (abi.Status, []byte, error) {
	if err := g.write(ctx, config); err != nil {
		return 0, nil, err
	}
	what := fmt.Sprintf("wingate_init(%d)", len(config))
	v, err := g.call(ctx, g.init, what, uint64(len(config)))
	if err != nil {
		return 0, nil, err
	}
	return g.payload(what, v)
}

// decideRaw writes in and calls wingate_decide(kind, len(in)).
func (g *guest) decideRaw(ctx context.Context, kind abi.Kind, in []byte) (abi.Status, []byte, error) {
	if err := g.write(ctx, in); err != nil {
		return 0, nil, err
	}
	return g.decideWritten(ctx, kind, uint32(len(in)))
}

// decideWritten calls wingate_decide on what is already in the buffer.
func (g *guest) decideWritten(ctx context.Context, kind abi.Kind, n uint32) (abi.Status, []byte, error) {
	what := fmt.Sprintf("wingate_decide(%d, %d)", kind, n)
	v, err := g.call(ctx, g.decide, what, uint64(kind), uint64(n))
	if err != nil {
		return 0, nil, err
	}
	return g.payload(what, v)
}
