// Package wasmcode writes WebAssembly code bytes by hand: LEB128
// numbers, the few instructions that the policy runtime's rewriting of
// guest code and the hand-assembled guests of the tests use, data
// segments at fixed addresses, and the functions every ABI v1 module
// exports. It is the one encoder of these bytes in the repository.
package wasmcode

import (
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/sdk/abi"
)

// AppendULEB appends v as an unsigned LEB128 number.
func AppendULEB(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// AppendSLEB appends v as a signed LEB128 number.
func AppendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Cat joins instruction sequences.
func Cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// Body joins instruction sequences and closes them with end: a
// function body as the code section holds it.
func Body(parts ...[]byte) []byte { return append(Cat(parts...), 0x0b) }

// I32Const is i32.const v; v is taken modulo 2^32 as the instruction's
// signed immediate.
func I32Const(v int64) []byte { return AppendSLEB([]byte{0x41}, int64(int32(v))) }

// I64Const is i64.const v.
func I64Const(v int64) []byte { return AppendSLEB([]byte{0x42}, v) }

// Packed pushes an ABI v1 packed result: ptr in the high 32 bits, size
// in the low.
func Packed(ptr, size uint32) []byte { return I64Const(int64(ptr)<<32 | int64(size)) }

// Call is call idx.
func Call(idx uint32) []byte { return AppendULEB([]byte{0x10}, idx) }

// LocalGet is local.get i.
func LocalGet(i uint32) []byte { return AppendULEB([]byte{0x20}, i) }

// LocalSet is local.set i.
func LocalSet(i uint32) []byte { return AppendULEB([]byte{0x21}, i) }

// LE32 writes each value as four little-endian bytes.
func LE32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return b
}

// DataAt is an active data segment writing init at address at.
func DataAt(at uint32, init []byte) *wasm.DataSegment {
	return &wasm.DataSegment{
		OffsetExpression: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: AppendSLEB(nil, int64(int32(at)))},
		Init:             init,
	}
}

// ABITypes returns the function types of the ABI v1 exports, for the
// start of a module's type section: () -> i32 (marker, kinds),
// (i32) -> i32 (buffer), (i32) -> i64 (init), (i32, i32) -> i64
// (decide). The slice is new on every call, so a caller may append.
func ABITypes() []*wasm.FunctionType {
	i32, i64 := wasm.ValueTypeI32, wasm.ValueTypeI64
	return []*wasm.FunctionType{
		{Results: []wasm.ValueType{i32}},
		{Params: []wasm.ValueType{i32}, Results: []wasm.ValueType{i32}},
		{Params: []wasm.ValueType{i32}, Results: []wasm.ValueType{i64}},
		{Params: []wasm.ValueType{i32, i32}, Results: []wasm.ValueType{i64}},
	}
}

// ABIFunctions returns the function section entries (type indexes into
// ABITypes) of the ABI v1 exports, in the order ABIExports names them:
// marker, kinds, buffer, init, decide. The slice is new on every call.
func ABIFunctions() []wasm.Index { return []wasm.Index{0, 0, 1, 2, 3} }

// ABIExports exports the five ABI v1 functions, which stand at function
// indexes first to first+4 in the order of ABIFunctions, and memory 0.
func ABIExports(first uint32) []*wasm.Export {
	names := [...]string{abi.ExportMarker, abi.ExportKinds, abi.ExportBuffer, abi.ExportInit, abi.ExportDecide}
	out := make([]*wasm.Export, 0, len(names)+1)
	for i, name := range names {
		out = append(out, &wasm.Export{Type: wasm.ExternTypeFunc, Name: name, Index: first + uint32(i)})
	}
	return append(out, &wasm.Export{Type: wasm.ExternTypeMemory, Name: abi.ExportMemory, Index: 0})
}
