// Package testguest assembles small ABI v1 modules in Go, byte by byte:
// a guest that does no work (the engine-overhead baseline of the
// benchmarks) and deliberately broken guests that the conformance kit
// must fail, each for one named reason. They are built from these
// sources at test time; no .wasm file is committed.
package testguest

import (
	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Memory layout of every guest here: the OK init payload at okAt, the
// decision payload at decisionAt, the input buffer at bufferAt (one page
// of memory is enough for the buffer the host asks for first, 4,096
// bytes; two pages leave room).
const (
	okAt       = 16
	decisionAt = 64
	bufferAt   = 4096
)

var (
	i32c = wasmcode.I32Const
	body = wasmcode.Body
)

func packed(ptr, n int) []byte { return wasmcode.Packed(uint32(ptr), uint32(n)) }

// module assembles a guest declaring kinds whose wingate_buffer body,
// wingate_decide body and decision payload (status byte included) are
// given.
func module(kinds int64, bufferBody, decideBody, payload []byte) []byte {
	m := &wasm.Module{
		TypeSection:     wasmcode.ABITypes(),
		FunctionSection: wasmcode.ABIFunctions(),
		MemorySection:   &wasm.Memory{Min: 2, Max: 2, IsMaxEncoded: true},
		CodeSection: []*wasm.Code{
			{Body: body(i32c(abi.MinorVersion))},
			{Body: body(i32c(kinds))},
			{Body: bufferBody},
			{Body: body(packed(okAt, 1))},
			{Body: decideBody},
		},
		ExportSection: wasmcode.ABIExports(0),
		DataSection: []*wasm.DataSegment{
			wasmcode.DataAt(okAt, []byte{byte(abi.StatusOK)}),
			wasmcode.DataAt(decisionAt, payload),
		},
	}
	return binary.EncodeModule(m)
}

func okPayload(decision []byte) []byte { return append([]byte{byte(abi.StatusOK)}, decision...) }

// bufferOK returns the fixed input buffer for any size up to a page.
func bufferOK() []byte { return body(i32c(bufferAt)) }

// constant returns the same payload for every call.
func constant(payload []byte) []byte { return body(packed(decisionAt, len(payload))) }

// NoopCache is a cache guest that does no work: every decision is the
// same bypass, whatever the request. It is the baseline of the engine's
// own cost per decision (not a conformant policy: it accepts any input).
func NoopCache() []byte {
	return ConstantCache(&abi.CacheDecision{Action: abi.CacheBypass})
}

// ConstantCache is a cache guest that does no work but answer d, whatever
// the request: with a policy's own decision for a request, the engine's
// cost for that decision (decoding the key and tags included) without
// the policy's work.
func ConstantCache(d *abi.CacheDecision) []byte {
	p := okPayload(abi.AppendCacheDecision(nil, d))
	return module(int64(abi.KindCache.Bit()), bufferOK(), constant(p), p)
}

// WrongTagCount is a cache guest whose decision says two tags and
// carries one: a wrong result encoding, which the conformance kit must
// report naming the tags field.
func WrongTagCount() []byte {
	var d []byte
	d = append(d, byte(abi.CacheLookup))
	d = append(d, 1, 0, 0, 0, 'k')
	d = append(d, 60, 0, 0, 0)
	d = append(d, byte(abi.ScopeGlobal))
	d = append(d, 0, 0, 0, 0)
	d = append(d, 2, 0, 0, 0)      // tags: count 2
	d = append(d, 1, 0, 0, 0, 't') // ... and only one tag
	p := okPayload(d)
	return module(int64(abi.KindCache.Bit()), bufferOK(), constant(p), p)
}

// BufferPastMemory is a cache guest whose wingate_buffer returns an
// address 16 bytes before the end of its memory whatever the size asked:
// the host would write past memory.
func BufferPastMemory() []byte {
	p := okPayload(abi.AppendCacheDecision(nil, &abi.CacheDecision{Action: abi.CacheBypass}))
	return module(int64(abi.KindCache.Bit()), body(i32c(2*65536-16)), constant(p), p)
}

// TrapsOnEmptyInput is a route guest that answers every request with a
// fixed decision but traps (unreachable) on an empty one instead of
// returning an error status.
func TrapsOnEmptyInput() []byte {
	p := okPayload(abi.AppendRouteDecision(nil, &abi.RouteDecision{Tier: abi.TierStandard, Score: 0.5, Reason: "fixed"}))
	decide := body(
		[]byte{0x20, 0x01, 0x45, 0x04, 0x40, 0x00, 0x0b}, // local.get 1; i32.eqz; if; unreachable; end
		packed(decisionAt, len(p)),
	)
	return module(int64(abi.KindRoute.Bit()), bufferOK(), decide, p)
}
