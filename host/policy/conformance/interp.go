package conformance

import (
	"context"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Interpreted is one instance of a module run by wazero's interpreter:
// nothing to compile, so it starts at once, which is what an edit-test
// loop needs (compiling a 3 MB Go module takes seconds); its calls are
// slower than the host's compiled ones. It decides the way the host does
// (same encoding, same checks of the decision) and implements
// policytest.Decider. It is not safe for concurrent use and has no
// deadline beyond 20 s per call: it is a test tool, not a host.
type Interpreted struct {
	h *harness
	g *guest
}

// ErrPolicy wraps a policy's error status.
var ErrPolicy = errors.New("policy error")

// NewInterpreted starts an instance of wasm and initializes it with config.
func NewInterpreted(ctx context.Context, wasm []byte, config []byte) (*Interpreted, error) {
	h, err := newHarnessConfig(ctx, wasm, wazero.NewRuntimeConfigInterpreter())
	if err != nil {
		return nil, err
	}
	r := &run{ctx: ctx, h: h, opts: Options{Config: config}}
	g, err := r.fresh()
	if err != nil {
		h.Close(ctx)
		return nil, err
	}
	return &Interpreted{h: h, g: g}, nil
}

// Close releases the instance.
func (m *Interpreted) Close(ctx context.Context) { m.h.Close(ctx) }

func (m *Interpreted) decide(ctx context.Context, kind abi.Kind, in []byte) ([]byte, error) {
	st, body, err := m.g.decideRaw(ctx, kind, in)
	if err != nil {
		if errors.Is(err, errTrap) {
			// As the host: a trapped instance is replaced.
			r := &run{ctx: ctx, h: m.h}
			if g, ferr := r.fresh(); ferr == nil {
				m.g.Close(ctx)
				m.g = g
			}
		}
		return nil, err
	}
	if st != abi.StatusOK {
		return nil, fmt.Errorf("%w: %s", ErrPolicy, body)
	}
	return body, nil
}

// Cache decides a cache request.
func (m *Interpreted) Cache(ctx context.Context, req *abi.CacheRequest) (abi.CacheDecision, error) {
	var d abi.CacheDecision
	b, err := m.decide(ctx, abi.KindCache, abi.AppendCacheRequest(nil, req))
	if err == nil {
		if err = checkCacheDecision(b); err == nil {
			err = abi.DecodeCacheDecision(b, &d)
		}
	}
	return d, err
}

// Route decides a route request.
func (m *Interpreted) Route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, error) {
	var d abi.RouteDecision
	b, err := m.decide(ctx, abi.KindRoute, abi.AppendRouteRequest(nil, req))
	if err == nil {
		if err = checkRouteDecision(b); err == nil {
			err = abi.DecodeRouteDecision(b, &d)
		}
	}
	return d, err
}

// Compress decides a compress request.
func (m *Interpreted) Compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, error) {
	var d abi.CompressDecision
	b, err := m.decide(ctx, abi.KindCompress, abi.AppendCompressRequest(nil, req))
	if err == nil {
		if err = checkCompressDecision(b, req); err == nil {
			err = abi.DecodeCompressDecision(b, &d)
		}
	}
	return d, err
}
