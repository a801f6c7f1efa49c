package policy

import (
	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Hand-assembled modules for load-validation tests and the loop-guard
// benchmark. abiModule returns a minimal module that satisfies ABI v1
// statically: its decide returns an error status, its marker returns
// minor.

var (
	tVoid    = &wasm.FunctionType{}
	tLog     = &wasm.FunctionType{Params: []wasm.ValueType{i32, i32, i32}}
	abiTypes = wasmcode.ABITypes()
	// The ABI's types: () -> i32, (i32) -> i32, (i32) -> i64, (i32, i32) -> i64.
	tI32, tI32I32, tI32I64, tI32x2I6 = abiTypes[0], abiTypes[1], abiTypes[2], abiTypes[3]
)

func i32const(v byte) []byte { return wasmcode.I32Const(int64(v)) }

var body = wasmcode.Body

// abiModule returns the module as a wabin Module so tests can break it.
// Memory holds at 16 the error payload "\x01x".
func abiModule(minor byte) *wasm.Module {
	return &wasm.Module{
		TypeSection:     []*wasm.FunctionType{tI32, tI32I32, tI32I64, tI32x2I6},
		FunctionSection: wasmcode.ABIFunctions(),
		MemorySection:   &wasm.Memory{Min: 1},
		CodeSection: []*wasm.Code{
			{Body: body(i32const(minor))},        // wingate_abi_v1
			{Body: body(i32const(1 << 2))},       // wingate_kinds: route
			{Body: body(i32const(64))},           // wingate_buffer
			{Body: body(okPayloadPacked())},      // wingate_init: status ok
			{Body: body(wasmcode.Packed(16, 2))}, // wingate_decide: the error payload at 16
		},
		ExportSection: wasmcode.ABIExports(0),
		DataSection: []*wasm.DataSegment{
			wasmcode.DataAt(16, []byte{byte(abi.StatusError), 'x'}),
			wasmcode.DataAt(24, []byte{byte(abi.StatusOK)}),
		},
	}
}

// okPayloadPacked is i64.const (24<<32 | 1): the one-byte OK payload.
func okPayloadPacked() []byte { return wasmcode.Packed(24, 1) }

func encode(m *wasm.Module) []byte { return binary.EncodeModule(m) }

// loopModule exports "spin" (n i32) -> i32: a counted loop of n
// iterations, the shape used to price the loop guard.
func loopModule() *wasm.Module {
	// (local $i i32) loop: i = i + 1; br_if 0 (i < n); end; return i
	code := []byte{
		0x03, 0x40, // loop
		0x20, 0x01, 0x41, 0x01, 0x6a, 0x21, 0x01, // local.get 1; i32.const 1; i32.add; local.set 1
		0x20, 0x01, 0x20, 0x00, 0x48, 0x0d, 0x00, // local.get 1; local.get 0; i32.lt_s; br_if 0
		0x0b,       // end loop
		0x20, 0x01, // local.get 1
		0x0b,
	}
	return &wasm.Module{
		TypeSection:     []*wasm.FunctionType{tI32I32},
		FunctionSection: []wasm.Index{0},
		CodeSection:     []*wasm.Code{{LocalTypes: []wasm.ValueType{i32}, Body: code}},
		ExportSection:   []*wasm.Export{{Type: wasm.ExternTypeFunc, Name: "spin", Index: 0}},
	}
}

// echoRouteModule is a tiny route policy whose decisions carry its
// configuration as the reason: {economy, 0.5, config}. It starts in
// microseconds, so tests can load hundreds of versions.
func echoRouteModule() *wasm.Module {
	const (
		buf = 1024 // input buffer
		out = 4096 // result payload: status, tier, score, reason
	)
	c32, c64 := wasmcode.I32Const, wasmcode.I64Const
	memarg := func(align, off byte) []byte { return []byte{align, off} }
	initBody := body(
		c32(out), c32(0), []byte{0x3a}, memarg(0, 0), // i32.store8 status ok
		c32(out+1), c32(0), []byte{0x3a}, memarg(0, 0), // tier economy
		c32(out+2), c64(0x3FE0000000000000), []byte{0x37}, memarg(0, 0), // i64.store score 0.5
		c32(out+10), []byte{0x20, 0x00}, []byte{0x36}, memarg(0, 0), // i32.store reason length
		c32(out+14), c32(buf), []byte{0x20, 0x00}, []byte{0xfc, 0x0a, 0x00, 0x00}, // memory.copy
		c32(0), []byte{0x20, 0x00}, []byte{0x36}, memarg(0, 0), // remember the length at 0
		okPayloadPacked(),
	)
	decideBody := body(
		c64(out<<32),
		c32(0), []byte{0x28}, memarg(0, 0), // i32.load length
		c32(14), []byte{0x6a}, // i32.add
		[]byte{0xad}, // i64.extend_i32_u
		[]byte{0x84}, // i64.or
	)
	m := abiModule(0)
	m.MemorySection = &wasm.Memory{Min: 1}
	m.CodeSection[2].Body = body(c32(buf))
	m.CodeSection[3].Body = initBody
	m.CodeSection[4].Body = decideBody
	return m
}
