package guests

import (
	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"

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

var types = []*wasm.FunctionType{
	{Results: []wasm.ValueType{i32}},
	{Params: []wasm.ValueType{i32}, Results: []wasm.ValueType{i32}},
	{Params: []wasm.ValueType{i32}, Results: []wasm.ValueType{i64}},
	{Params: []wasm.ValueType{i32, i32}, Results: []wasm.ValueType{i64}},
	{},
	{Params: []wasm.ValueType{i32, i32, i32}},
	{Params: []wasm.ValueType{i32, i32, i32, i32}, Results: []wasm.ValueType{i32}},
	{Params: []wasm.ValueType{i32}},
	{Params: []wasm.ValueType{i64}, Results: []wasm.ValueType{i64}},
}

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
	export := func(name string, idx uint32) {
		m.ExportSection = append(m.ExportSection, &wasm.Export{Type: wasm.ExternTypeFunc, Name: name, Index: idx})
	}
	export(abi.ExportMarker, add(function{typ: tRetI32, body: i32c(0)}))
	export(abi.ExportKinds, add(function{typ: tRetI32, body: i32c(int64(kinds))}))
	export(abi.ExportBuffer, add(function{typ: tI32RetI32, body: or(s.buffer, i32c(inputBuffer))}))
	export(abi.ExportInit, add(function{typ: tI32RetI64, body: or(s.init, packed(okPayload, 1))}))
	export(abi.ExportDecide, add(function{typ: tDecide, body: or(s.decide, packed(errPayload, 2))}))
	if s.initialize != nil {
		export("_initialize", add(function{typ: tVoid, body: s.initialize}))
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
	m.ExportSection = append(m.ExportSection, &wasm.Export{Type: wasm.ExternTypeMemory, Name: abi.ExportMemory, Index: 0})
	bypass := append([]byte{byte(abi.StatusOK)}, abi.AppendCacheDecision(nil, &abi.CacheDecision{Action: abi.CacheBypass})...)
	m.DataSection = append([]*wasm.DataSegment{
		seg(errPayload, []byte{byte(abi.StatusError), 'x'}),
		seg(okPayload, []byte{byte(abi.StatusOK)}),
		seg(bypassPayload, bypass),
		seg(textAt, []byte("hostile policy output, hostile policy output, hostile output....\n")),
		seg(iovAt, le32(textAt, 64)),
	}, s.data...)
	return m
}

func (s spec) wasm() []byte { return binary.EncodeModule(s.module()) }

func seg(at uint32, b []byte) *wasm.DataSegment {
	return &wasm.DataSegment{
		OffsetExpression: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: sleb(nil, int64(int32(at)))},
		Init:             b,
	}
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return b
}

// Instructions.

func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func uleb(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func code(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func i32c(v int64) []byte { return sleb([]byte{0x41}, int64(int32(v))) }
func i64c(v int64) []byte { return sleb([]byte{0x42}, v) }

// packed pushes the packed result (ptr, size).
func packed(ptr, size uint32) []byte { return i64c(int64(ptr)<<32 | int64(size)) }

func call(idx uint32) []byte    { return uleb([]byte{0x10}, idx) }
func localGet(i uint32) []byte  { return uleb([]byte{0x20}, i) }
func localSet(i uint32) []byte  { return uleb([]byte{0x21}, i) }
func store32(off uint32) []byte { return uleb([]byte{0x36, 0x02}, off) }
func store8(off uint32) []byte  { return uleb([]byte{0x3a, 0x00}, off) }
func drop() []byte              { return []byte{0x1a} }
func unreachable() []byte       { return []byte{0x00} }
func memoryGrow() []byte        { return []byte{0x40, 0x00} }
func memorySize() []byte        { return []byte{0x3f, 0x00} }
func memoryFill() []byte        { return []byte{0xfc, 0x0b, 0x00} }
func memoryCopy() []byte        { return []byte{0xfc, 0x0a, 0x00, 0x00} }
func forever(body ...[]byte) []byte {
	return code([]byte{0x03, 0x40}, code(body...), []byte{0x0c, 0x00, 0x0b})
}

// ifThen runs body when the i32 on the stack is non-zero.
func ifThen(body ...[]byte) []byte { return code([]byte{0x04, 0x40}, code(body...), []byte{0x0b}) }

func encode(m *wasm.Module) []byte { return binary.EncodeModule(m) }
