package guests

import (
	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The assembler: an ABI v1 module described by a spec, built with
// wabin's module model. Function indexes: the imports first, then the
// spec's extra functions (so their indexes are known while writing the
// bodies), then the ABI exports, _initialize and the start function.

var (
	i32 = wasm.ValueTypeI32
	i64 = wasm.ValueTypeI64
)

// Types of the type section, by index.
const (
	tRetI32    = iota // () -> i32
	tI32RetI32        // (i32) -> i32
	tI32RetI64        // (i32) -> i64
	tDecide           // (i32, i32) -> i64
	tVoid             // () -> ()
	tLog              // (i32, i32, i32) -> ()
	tFdWrite          // (i32, i32, i32, i32) -> i32
	tI32              // (i32) -> ()
	tI64RetI64        // (i64) -> i64
)

// The ABI's four types first (wasmcode.ABITypes), then the others.
var types = append(wasmcode.ABITypes(),
	&wasm.FunctionType{},
	&wasm.FunctionType{Params: []wasm.ValueType{i32, i32, i32}},
	&wasm.FunctionType{Params: []wasm.ValueType{i32, i32, i32, i32}, Results: []wasm.ValueType{i32}},
	&wasm.FunctionType{Params: []wasm.ValueType{i32}},
	&wasm.FunctionType{Params: []wasm.ValueType{i64}, Results: []wasm.ValueType{i64}},
)

// Memory layout of every module.
const (
	errPayload    = 16   // "\x01x": an error status
	okPayload     = 24   // "\x00": status OK (init)
	bypassPayload = 32   // status OK and a cache bypass decision
	bypassLen     = 19   // its length
	textAt        = 256  // 64 bytes of text for log and fd_write
	iovAt         = 512  // an iovec for fd_write: {textAt, 64}
	inputBuffer   = 1024 // wingate_buffer's answer
)

type importFn struct {
	module, name string
	typ          uint32
}

var (
	importLog     = importFn{abi.HostModule, abi.ImportLog, tLog}
	importFdWrite = importFn{"wasi_snapshot_preview1", "fd_write", tFdWrite}
)

type function struct {
	typ    uint32
	locals []wasm.ValueType
	body   []byte // without the final end
}

type spec struct {
	kinds      uint32 // zero: cache
	memMin     uint32 // zero: 1 page
	memMax     uint32 // zero: none declared
	imports    []importFn
	extra      []function
	buffer     []byte // body of wingate_buffer; nil: returns inputBuffer
	init       []byte // body of wingate_init; nil: returns the OK payload
	decide     []byte // body of wingate_decide; nil: returns the error payload
	initialize []byte // body of _initialize; nil: not exported
	start      []byte // body of the start function; nil: no start section
	data       []*wasm.DataSegment
}

// fn returns the index of extra function i of a spec with nImports imports.
func fn(nImports, i int) uint32 { return uint32(nImports + i) }

func (s spec) module() *wasm.Module {
	m := &wasm.Module{TypeSection: types}
	for _, im := range s.imports {
		m.ImportSection = append(m.ImportSection, &wasm.Import{Type: wasm.ExternTypeFunc, Module: im.module, Name: im.name, DescFunc: im.typ})
	}
	add := func(f function) uint32 {
		idx := uint32(len(s.imports) + len(m.FunctionSection))
		m.FunctionSection = append(m.FunctionSection, f.typ)
		m.CodeSection = append(m.CodeSection, &wasm.Code{LocalTypes: f.locals, Body: append(append([]byte(nil), f.body...), 0x0b)})
		return idx
	}
	for _, f := range s.extra {
		add(f)
	}
	kinds := s.kinds
	if kinds == 0 {
		kinds = abi.KindCache.Bit()
	}
	or := func(b, def []byte) []byte {
		if b == nil {
			return def
		}
		return b
	}
	abiFns := wasmcode.ABIFunctions()
	first := add(function{typ: abiFns[0], body: wasmcode.I32Const(0)})
	add(function{typ: abiFns[1], body: wasmcode.I32Const(int64(kinds))})
	add(function{typ: abiFns[2], body: or(s.buffer, wasmcode.I32Const(inputBuffer))})
	add(function{typ: abiFns[3], body: or(s.init, wasmcode.Packed(okPayload, 1))})
	add(function{typ: abiFns[4], body: or(s.decide, wasmcode.Packed(errPayload, 2))})
	m.ExportSection = append(m.ExportSection, wasmcode.ABIExports(first)...)
	if s.initialize != nil {
		idx := add(function{typ: tVoid, body: s.initialize})
		m.ExportSection = append(m.ExportSection, &wasm.Export{Type: wasm.ExternTypeFunc, Name: "_initialize", Index: idx})
	}
	if s.start != nil {
		idx := add(function{typ: tVoid, body: s.start})
		m.StartSection = &idx
	}
	mem := &wasm.Memory{Min: max(s.memMin, 1)}
	if s.memMax != 0 {
		mem.Max, mem.IsMaxEncoded = s.memMax, true
	}
	m.MemorySection = mem
	bypass := append([]byte{byte(abi.StatusOK)}, abi.AppendCacheDecision(nil, &abi.CacheDecision{Action: abi.CacheBypass})...)
	m.DataSection = append([]*wasm.DataSegment{
		wasmcode.DataAt(errPayload, []byte{byte(abi.StatusError), 'x'}),
		wasmcode.DataAt(okPayload, []byte{byte(abi.StatusOK)}),
		wasmcode.DataAt(bypassPayload, bypass),
		wasmcode.DataAt(textAt, []byte("hostile policy output, hostile policy output, hostile output....\n")),
		wasmcode.DataAt(iovAt, wasmcode.LE32(textAt, 64)),
	}, s.data...)
	return m
}

func (s spec) wasm() []byte { return binary.EncodeModule(s.module()) }

// Instructions.

func store32(off uint32) []byte { return wasmcode.AppendULEB([]byte{0x36, 0x02}, off) }
func store8(off uint32) []byte  { return wasmcode.AppendULEB([]byte{0x3a, 0x00}, off) }
func drop() []byte              { return []byte{0x1a} }
func unreachable() []byte       { return []byte{0x00} }
func memoryGrow() []byte        { return []byte{0x40, 0x00} }
func memorySize() []byte        { return []byte{0x3f, 0x00} }
func memoryFill() []byte        { return []byte{0xfc, 0x0b, 0x00} }
func memoryCopy() []byte        { return []byte{0xfc, 0x0a, 0x00, 0x00} }
func forever(body ...[]byte) []byte {
	return wasmcode.Cat([]byte{0x03, 0x40}, wasmcode.Cat(body...), []byte{0x0c, 0x00, 0x0b})
}

// ifThen runs body when the i32 on the stack is non-zero.
func ifThen(body ...[]byte) []byte {
	return wasmcode.Cat([]byte{0x04, 0x40}, wasmcode.Cat(body...), []byte{0x0b})
}

func encode(m *wasm.Module) []byte { return binary.EncodeModule(m) }
