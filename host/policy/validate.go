package policy

import (
	"fmt"
	"strings"

	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
	"github.com/wingman-app/wingate/sdk/abi"
)

// wasiModule is the WASI import module the Go runtime uses.
const wasiModule = "wasi_snapshot_preview1"

// allowedWASI are the WASI functions a guest may import: what the Go
// runtime and its standard streams need. No file system, socket or
// process-control calls beyond exit; the host provides no preopened
// directories, environment or arguments anyway, and fake clocks and
// randomness.
var allowedWASI = map[string]bool{
	"args_get": true, "args_sizes_get": true, "environ_get": true, "environ_sizes_get": true,
	"clock_time_get": true, "clock_res_get": true, "random_get": true, "poll_oneoff": true,
	"sched_yield": true, "proc_exit": true,
	"fd_write": true, "fd_read": true, "fd_close": true, "fd_seek": true,
	"fd_fdstat_get": true, "fd_fdstat_set_flags": true, "fd_prestat_get": true, "fd_prestat_dir_name": true,
}

// funcSig is a function signature in the module's value types.
type funcSig struct {
	params, results []wasm.ValueType
}

func (s funcSig) String() string {
	name := func(ts []wasm.ValueType) string {
		parts := make([]string, len(ts))
		for i, t := range ts {
			parts[i] = wasm.ValueTypeName(t)
		}
		return strings.Join(parts, ", ")
	}
	out := "func(" + name(s.params) + ")"
	switch len(s.results) {
	case 0:
	case 1:
		out += " -> " + name(s.results)
	default:
		out += " -> (" + name(s.results) + ")"
	}
	return out
}

func (s funcSig) equal(o funcSig) bool {
	if len(s.params) != len(o.params) || len(s.results) != len(o.results) {
		return false
	}
	for i := range s.params {
		if s.params[i] != o.params[i] {
			return false
		}
	}
	for i := range s.results {
		if s.results[i] != o.results[i] {
			return false
		}
	}
	return true
}

var (
	i32 = wasm.ValueTypeI32
	i64 = wasm.ValueTypeI64
)

// requiredExports are the ABI v1 function exports and their signatures.
var requiredExports = []struct {
	name string
	sig  funcSig
}{
	{abi.ExportMarker, funcSig{nil, []wasm.ValueType{i32}}},
	{abi.ExportKinds, funcSig{nil, []wasm.ValueType{i32}}},
	{abi.ExportBuffer, funcSig{[]wasm.ValueType{i32}, []wasm.ValueType{i32}}},
	{abi.ExportInit, funcSig{[]wasm.ValueType{i32}, []wasm.ValueType{i64}}},
	{abi.ExportDecide, funcSig{[]wasm.ValueType{i32, i32}, []wasm.ValueType{i64}}},
}

// hostImports are the functions of module "wingate" and their signatures.
var hostImports = map[string]funcSig{
	abi.ImportLog: {[]wasm.ValueType{i32, i32, i32}, nil},
}

// prepared is a validated module rewritten with the loop guard.
type prepared struct {
	wasm        []byte // the rewritten module, ready to compile
	initialize  bool   // the module exports _initialize (a reactor)
	start       bool   // the module had a start section, now exported as startExportName
	memoryPages uint32 // declared initial memory, in pages
}

// loadLimits are the limits prepare checks and the guard it inserts.
type loadLimits struct {
	maxPages        uint32 // memory cap per instance, in pages
	maxInitialPages uint32 // initial memory, in pages
	maxDataBytes    uint64 // data segments, in bytes
	guard           guardOptions
}

// precheck is what prepare checks before decoding the module: its
// counts and lengths (checkBounds) and its data segments' size. It reads
// the bytes in place and allocates nothing in proportion to them.
func precheck(name string, bin []byte, lim loadLimits) error {
	data, err := checkBounds(bin)
	if err != nil {
		return &LoadError{Policy: name, Item: "module", Err: fmt.Errorf("not a WebAssembly module: %w", err)}
	}
	if lim.maxDataBytes > 0 && data > lim.maxDataBytes {
		return &LoadError{Policy: name, Item: "data", Want: fmt.Sprintf("data segments of at most %d bytes in all (Options.MaxDataBytes)", lim.maxDataBytes),
			Found: fmt.Sprintf("%d bytes", data)}
	}
	return nil
}

// prepare validates the module against ABI v1 and the host's limits and
// rewrites it with the guard.
func prepare(name string, bin []byte, lim loadLimits) (p prepared, err error) {
	maxPages := lim.maxPages
	lerr := func(item, want, found string) error {
		return &LoadError{Policy: name, Item: item, Want: want, Found: found}
	}
	if err := precheck(name, bin, lim); err != nil {
		return p, err
	}
	var m *wasm.Module
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = &LoadError{Policy: name, Item: "module", Err: fmt.Errorf("malformed binary: %v", r)}
			}
		}()
		m, err = binary.DecodeModule(bin, wasm.CoreFeaturesV2)
	}()
	if err != nil {
		if _, ok := err.(*LoadError); ok {
			return p, err
		}
		return p, &LoadError{Policy: name, Item: "module", Err: fmt.Errorf("not a WebAssembly module: %w", err)}
	}

	// Imports: functions only, from the host module or allowed WASI.
	var nImportedFuncs, nImportedGlobals uint32
	for _, im := range m.ImportSection {
		item := "import " + im.Module + "." + im.Name
		if im.Type != wasm.ExternTypeFunc {
			if im.Type == wasm.ExternTypeGlobal {
				nImportedGlobals++
			}
			return p, lerr(item, "only function imports", wasm.ExternTypeName(im.Type)+" import")
		}
		nImportedFuncs++
		switch im.Module {
		case abi.HostModule:
			want, ok := hostImports[im.Name]
			if !ok {
				return p, lerr(item, "one of wingate.log", "unknown host function "+im.Name)
			}
			got, err := typeOf(m, im.DescFunc)
			if err != nil {
				return p, lerr(item, want.String(), err.Error())
			}
			if !got.equal(want) {
				return p, lerr(item, want.String(), got.String())
			}
		case internalModule:
			return p, lerr(item, `imports from module "wingate" or "wasi_snapshot_preview1"`, `module "`+im.Module+`" (reserved for the host's guard)`)
		case wasiModule:
			if !allowedWASI[im.Name] {
				return p, lerr(item, "WASI calls the Go runtime needs", "a disallowed WASI call (policies get no file system, network or environment)")
			}
		default:
			return p, lerr(item, `imports from module "wingate" or "wasi_snapshot_preview1"`, `module "`+im.Module+`"`)
		}
	}

	// Exports.
	exports := make(map[string]*wasm.Export, len(m.ExportSection))
	for _, e := range m.ExportSection {
		exports[e.Name] = e
	}
	for _, reserved := range []string{stopGlobalName, haltGlobalName, depthGlobalName, startExportName} {
		if _, ok := exports[reserved]; ok {
			return p, lerr("export "+reserved, "no export of this reserved name", "an export")
		}
	}
	if _, ok := exports[abi.ExportMarker]; !ok {
		found := "no export named wingate_abi_v*"
		for n := range exports {
			if strings.HasPrefix(n, "wingate_abi_v") {
				found = "export " + n + " (a different major ABI version)"
			}
		}
		return p, lerr("export "+abi.ExportMarker, "the ABI v1 marker export", found)
	}
	for _, re := range requiredExports {
		item := "export " + re.name
		e, ok := exports[re.name]
		if !ok {
			return p, lerr(item, re.sig.String(), "no such export")
		}
		if e.Type != wasm.ExternTypeFunc {
			return p, lerr(item, re.sig.String(), wasm.ExternTypeName(e.Type))
		}
		got, err := funcTypeOf(m, e.Index, nImportedFuncs)
		if err != nil {
			return p, lerr(item, re.sig.String(), err.Error())
		}
		if !got.equal(re.sig) {
			return p, lerr(item, re.sig.String(), got.String())
		}
	}
	if e, ok := exports[abi.ExportMemory]; !ok || e.Type != wasm.ExternTypeMemory {
		return p, lerr("export memory", "the module's linear memory exported as \"memory\"", "none")
	}
	if e, ok := exports["_initialize"]; ok {
		if e.Type != wasm.ExternTypeFunc {
			return p, lerr("export _initialize", "func()", wasm.ExternTypeName(e.Type))
		}
		got, err := funcTypeOf(m, e.Index, nImportedFuncs)
		if err != nil || !got.equal(funcSig{}) {
			return p, lerr("export _initialize", "func()", fmt.Sprint(got))
		}
		p.initialize = true
	} else if _, ok := exports["_start"]; ok {
		return p, lerr("export _initialize", "a reactor module (go build -buildmode=c-shared)", "a command module exporting _start")
	}

	// Memory within the cap.
	if m.MemorySection == nil {
		return p, lerr("memory", "a linear memory", "none")
	}
	if m.MemorySection.Min > maxPages {
		return p, lerr("memory", fmt.Sprintf("initial size at most %d pages", maxPages), fmt.Sprintf("%d pages", m.MemorySection.Min))
	}
	if m.MemorySection.IsMaxEncoded && m.MemorySection.Max > maxPages {
		return p, lerr("memory", fmt.Sprintf("maximum at most %d pages", maxPages), fmt.Sprintf("%d pages", m.MemorySection.Max))
	}
	if lim.maxInitialPages > 0 && m.MemorySection.Min > lim.maxInitialPages {
		return p, lerr("memory", fmt.Sprintf("initial size at most %d pages (%d MiB; Options.MaxInitialPages)", lim.maxInitialPages, lim.maxInitialPages>>4),
			fmt.Sprintf("%d pages", m.MemorySection.Min))
	}
	p.memoryPages = m.MemorySection.Min

	// The start section runs inside instantiation, where the host cannot
	// arm a deadline: it becomes an export the host calls like the
	// others, under the start deadline, once the instance exists.
	if m.StartSection != nil {
		m.ExportSection = append(m.ExportSection, &wasm.Export{Type: wasm.ExternTypeFunc, Name: startExportName, Index: *m.StartSection})
		m.StartSection = nil
		p.start = true
	}

	// Rewrite: add the loop-budget global, export it, guard every loop.
	if err := addLoopGuard(m, nImportedFuncs, nImportedGlobals, lim.guard); err != nil {
		return p, &LoadError{Policy: name, Item: "code", Err: err}
	}
	// Fewer data segments: instantiation applies each one.
	coalesceData(m)
	// Debug sections describe code offsets the rewrite moved.
	m.CustomSections = nil
	p.wasm = binary.EncodeModule(m)
	return p, nil
}

func typeOf(m *wasm.Module, typeIdx uint32) (funcSig, error) {
	if int(typeIdx) >= len(m.TypeSection) {
		return funcSig{}, fmt.Errorf("type index %d out of range", typeIdx)
	}
	t := m.TypeSection[typeIdx]
	return funcSig{t.Params, t.Results}, nil
}

func funcTypeOf(m *wasm.Module, funcIdx, nImported uint32) (funcSig, error) {
	if funcIdx < nImported {
		n := uint32(0)
		for _, im := range m.ImportSection {
			if im.Type == wasm.ExternTypeFunc {
				if n == funcIdx {
					return typeOf(m, im.DescFunc)
				}
				n++
			}
		}
	}
	i := funcIdx - nImported
	if int(i) >= len(m.FunctionSection) {
		return funcSig{}, fmt.Errorf("function index %d out of range", funcIdx)
	}
	return typeOf(m, m.FunctionSection[i])
}

// guardOptions choose the rewrite's guards and limits.
type guardOptions struct {
	// loopsOnly leaves call sites unguarded: the guard as it was before
	// call sites were checked, kept only to price the call guard
	// (BenchmarkGuard). Never set outside tests.
	loopsOnly bool
	// maxDepth is the call depth a call may reach (DefaultMaxCallDepth).
	maxDepth uint32
}

// addLoopGuard adds the guard globals to m (the loop budget, exported as
// stopGlobalName; the halt flag, haltGlobalName; the call depth the call
// may take before it asks for more, depthGlobalName, starting at
// depthStep or o.maxDepth if lower), inserts the loop check at
// every loop header and the call check around every call that may run
// unbounded (see guardBody), and replaces memory.fill and memory.copy with
// calls to appended functions that work in guarded chunks (bulkFill,
// bulkCopy).
func addLoopGuard(m *wasm.Module, nImportedFuncs, nImportedGlobals uint32, o guardOptions) error {
	if o.maxDepth == 0 {
		o.maxDepth = DefaultMaxCallDepth
	}
	stop := nImportedGlobals + uint32(len(m.GlobalSection))
	m.GlobalSection = append(m.GlobalSection, &wasm.Global{
		Type: &wasm.GlobalType{ValType: wasm.ValueTypeI64, Mutable: true},
		Init: &wasm.ConstantExpression{Opcode: wasm.OpcodeI64Const, Data: []byte{0}},
	})
	halt := stop + 1
	m.GlobalSection = append(m.GlobalSection, &wasm.Global{
		Type: &wasm.GlobalType{ValType: wasm.ValueTypeI32, Mutable: true},
		Init: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: []byte{0}},
	})
	depth := stop + 2
	m.GlobalSection = append(m.GlobalSection, &wasm.Global{
		Type: &wasm.GlobalType{ValType: wasm.ValueTypeI32, Mutable: true},
		Init: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: wasmcode.AppendSLEB(nil, int64(min(o.maxDepth, depthStep)))},
	})
	m.ExportSection = append(m.ExportSection,
		&wasm.Export{Type: wasm.ExternTypeGlobal, Name: stopGlobalName, Index: stop},
		&wasm.Export{Type: wasm.ExternTypeGlobal, Name: haltGlobalName, Index: halt},
		&wasm.Export{Type: wasm.ExternTypeGlobal, Name: depthGlobalName, Index: depth})

	// The refill import (see hostRefill) takes the first function index
	// after the other imports: every defined function moves up by one.
	var refill uint32
	if !o.loopsOnly {
		refill = nImportedFuncs
		typ := uint32(len(m.TypeSection))
		for i, t := range m.TypeSection {
			if len(t.Params) == 1 && t.Params[0] == i32 && len(t.Results) == 0 {
				typ = uint32(i)
				break
			}
		}
		if typ == uint32(len(m.TypeSection)) {
			m.TypeSection = append(m.TypeSection, &wasm.FunctionType{Params: []wasm.ValueType{i32}})
		}
		m.ImportSection = append(m.ImportSection, &wasm.Import{Type: wasm.ExternTypeFunc, Module: internalModule, Name: refillName, DescFunc: typ})
		shiftFuncs(m, nImportedFuncs)
	}

	// Which functions call: the others need no call check.
	leaf := make([]bool, len(m.CodeSection))
	bulk := false
	for i, c := range m.CodeSection {
		calls := false
		err := walkCode(c.Body, func(in instr) {
			switch {
			case in.op >= 0x10 && in.op <= 0x13:
				calls = true
			case in.op == 0xfc && (in.sub == 10 || in.sub == 11):
				bulk = true
			}
		})
		if err != nil {
			return fmt.Errorf("function %d: %w", nImportedFuncs+uint32(i), err)
		}
		leaf[i] = !calls
	}
	// Depth units per call: 1 + locals/frameLocals of the callee; for
	// call_indirect, of the heaviest function.
	cost := make([]uint32, len(m.CodeSection))
	heaviest := uint32(1)
	for i, c := range m.CodeSection {
		locals := len(c.LocalTypes)
		if int(i) < len(m.FunctionSection) && int(m.FunctionSection[i]) < len(m.TypeSection) {
			locals += len(m.TypeSection[m.FunctionSection[i]].Params)
		}
		cost[i] = 1 + uint32(locals/frameLocals)
		heaviest = max(heaviest, cost[i])
	}
	g := &guardConfig{budget: stop, halt: halt, depth: depth, calls: !o.loopsOnly, fill: noFunc, copy: noFunc,
		depthCost: func(op byte, idx uint32) uint32 {
			if op == 0x10 && idx >= nImportedFuncs && int(idx-nImportedFuncs) < len(cost) {
				return cost[idx-nImportedFuncs]
			}
			return heaviest
		},
		skipCall: func(idx uint32) bool {
			return idx < nImportedFuncs || (int(idx-nImportedFuncs) < len(leaf) && leaf[idx-nImportedFuncs])
		}}
	if !o.loopsOnly {
		g.refill, g.useRefill = refill, true
		g.shift, g.shiftFrom = true, nImportedFuncs
	}
	n := len(m.CodeSection)
	if bulk && !o.loopsOnly {
		g.fill, g.copy = appendBulk(m, nImportedFuncs+1, g)
	}
	for i, c := range m.CodeSection[:n] {
		body, err := guardBody(c.Body, g)
		if err != nil {
			return fmt.Errorf("function %d: %w", nImportedFuncs+uint32(i), err)
		}
		c.Body = body
	}
	// The chunked bulk functions: loop checks only, their own
	// memory.fill and memory.copy and their calls of the refill function
	// left as they are.
	g.fill, g.copy = noFunc, noFunc
	g.calls, g.shift = false, false
	for _, c := range m.CodeSection[n:] {
		body, err := guardBody(c.Body, g)
		if err != nil {
			return err
		}
		c.Body = body
	}
	return nil
}

// shiftFuncs moves every reference to a function defined in m (index at
// or above nImportedFuncs) up by one, outside the code: exports, element
// segments, global initializers and names. guardBody renumbers the code.
func shiftFuncs(m *wasm.Module, nImportedFuncs uint32) {
	up := func(idx uint32) uint32 {
		if idx >= nImportedFuncs {
			return idx + 1
		}
		return idx
	}
	for _, e := range m.ExportSection {
		if e.Type == wasm.ExternTypeFunc {
			e.Index = up(e.Index)
		}
	}
	for _, el := range m.ElementSection {
		for _, idx := range el.Init {
			if idx != nil {
				*idx = up(*idx)
			}
		}
	}
	for _, gl := range m.GlobalSection {
		if gl.Init != nil && gl.Init.Opcode == wasm.OpcodeRefFunc {
			r := codeReader{b: gl.Init.Data}
			if idx := r.uleb(); r.err == nil {
				gl.Init.Data = wasmcode.AppendULEB(nil, up(uint32(idx)))
			}
		}
	}
	if m.StartSection != nil {
		s := up(*m.StartSection)
		m.StartSection = &s
	}
	if ns := m.NameSection; ns != nil {
		for _, a := range ns.FunctionNames {
			a.Index = up(a.Index)
		}
		for _, a := range ns.LocalNames {
			a.Index = up(a.Index)
		}
	}
}
