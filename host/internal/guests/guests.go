// Package guests assembles hostile policy modules against ABI v1
// (sdk/ABI.md) for the sandbox's tests and drills. Each module is built
// in Go with wabin's module model, so the repository holds their sources
// and no .wasm file; Hostile returns one of every class of attack the
// host must contain, with what the host must do with it.
package guests

import (
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Want is what the host must do with a hostile module.
type Want int

const (
	// RefusedAtLoad: loading (a push, a policy directory) fails with a
	// *policy.LoadError whose Item contains Module.Item.
	RefusedAtLoad Want = iota
	// FailsAtCall: the module loads, and every decision call fails
	// (Module.Fails says how) within twice the deadline plus a
	// millisecond; the host serves the kind's fallback and counts the
	// failure towards quarantine.
	FailsAtCall
	// AnswersAtCall: the runtime accepts the decision, which is valid
	// ABI; containing it is the host's job elsewhere (a global cache key
	// on a user-scoped route is scoped by the cache middleware).
	AnswersAtCall
)

func (w Want) String() string {
	switch w {
	case RefusedAtLoad:
		return "refused at load"
	case FailsAtCall:
		return "fails at call"
	case AnswersAtCall:
		return "answers at call"
	}
	return "unknown"
}

// How a FailsAtCall module fails.
const (
	Timeout = "timeout" // stopped at its deadline
	Trap    = "trap"    // trapped (including the call-depth limit, proc_exit)
	Invalid = "invalid" // its decision or result is invalid
	Memory  = "memory"  // it left its memory over the recycle quota
	// Stopped: a timeout or a trap, whichever comes first (a deep
	// recursion of heavy frames meets its deadline or the call-depth
	// limit depending on how fast the machine runs it).
	Stopped = "stopped"
)

// Module is one hostile module.
type Module struct {
	Name string
	// Class says what the module tries, in a few words.
	Class string
	Kind  abi.Kind
	Wasm  []byte
	Want  Want
	// Item is part of the LoadError's Item for RefusedAtLoad.
	Item string
	// Fails is Timeout, Trap, Stopped, Invalid or Memory for FailsAtCall.
	Fails string
	// Floods is set for modules that write as much output as they can:
	// the log must stay within the output quotas.
	Floods bool
}

// Hostile returns the catalogue. It builds every module afresh (the
// largest, a 50 MB data segment, allocates that much); call it once.
func Hostile() []Module {
	var out []Module
	add := func(name, class string, want Want, detail string, s spec) {
		m := Module{Name: name, Class: class, Kind: abi.KindCache, Wasm: s.wasm(), Want: want}
		switch want {
		case RefusedAtLoad:
			m.Item = detail
		case FailsAtCall:
			m.Fails = detail
		}
		out = append(out, m)
	}

	// Calls without loops.
	tree := function{typ: tI32, body: wasmcode.Cat( // tree(n): if n == 0 return; tree(n-1); tree(n-1)
		wasmcode.LocalGet(0), []byte{0x45}, ifThen([]byte{0x0f}),
		wasmcode.LocalGet(0), wasmcode.I32Const(1), []byte{0x6b}, wasmcode.Call(0),
		wasmcode.LocalGet(0), wasmcode.I32Const(1), []byte{0x6b}, wasmcode.Call(0))}
	rec := function{typ: tI32, body: wasmcode.Cat(wasmcode.LocalGet(0), wasmcode.I32Const(1), []byte{0x6a}, wasmcode.Call(0))} // rec(n): rec(n+1)
	fat := function{typ: tI64RetI64, locals: repeat(i64, 2000), body: fatBody(2000)}
	add("call-tree", "exponential call tree without a loop", FailsAtCall, Timeout, spec{
		extra: []function{tree}, decide: wasmcode.Cat(wasmcode.I32Const(64), wasmcode.Call(0), wasmcode.Packed(errPayload, 2))})
	add("deep-recursion", "unbounded recursion", FailsAtCall, Stopped, spec{
		extra: []function{rec}, decide: wasmcode.Cat(wasmcode.I32Const(0), wasmcode.Call(0), wasmcode.Packed(errPayload, 2))})
	add("fat-recursion", "unbounded recursion of a function with 2,000 live locals", FailsAtCall, Stopped, spec{
		extra: []function{fat}, decide: wasmcode.Cat(wasmcode.I64Const(1), wasmcode.Call(0), drop(), wasmcode.Packed(errPayload, 2))})

	// Work before the deadline is armed.
	add("start-loop", "a start section that never ends", RefusedAtLoad, "start section", spec{start: forever()})
	add("start-call-tree", "a start section with an exponential call tree", RefusedAtLoad, "start section", spec{
		extra: []function{tree}, start: wasmcode.Cat(wasmcode.I32Const(64), wasmcode.Call(0))})
	add("start-recursion", "a start section recursing without end", RefusedAtLoad, "start section", spec{
		extra: []function{rec}, start: wasmcode.Cat(wasmcode.I32Const(0), wasmcode.Call(0))})
	add("initialize-loop", "an _initialize that never ends", RefusedAtLoad, "export _initialize", spec{initialize: forever()})
	add("initialize-call-tree", "an _initialize with an exponential call tree", RefusedAtLoad, "export _initialize", spec{
		extra: []function{tree}, initialize: wasmcode.Cat(wasmcode.I32Const(64), wasmcode.Call(0))})
	add("initialize-recursion", "an _initialize recursing without end", RefusedAtLoad, "export _initialize", spec{
		extra: []function{rec}, initialize: wasmcode.Cat(wasmcode.I32Const(0), wasmcode.Call(0))})
	add("init-loop", "a wingate_init that never ends", RefusedAtLoad, "export wingate_init", spec{
		init: wasmcode.Cat(forever(), wasmcode.Packed(okPayload, 1))})
	add("init-call-tree", "a wingate_init with an exponential call tree", RefusedAtLoad, "export wingate_init", spec{
		extra: []function{tree}, init: wasmcode.Cat(wasmcode.I32Const(64), wasmcode.Call(0), wasmcode.Packed(okPayload, 1))})

	// Output floods.
	add("log-flood", "wingate.log of a 2 GiB length, in an endless loop", FailsAtCall, Timeout, spec{
		imports: []importFn{importLog},
		decide:  wasmcode.Cat(forever(wasmcode.I32Const(0), wasmcode.I32Const(textAt), wasmcode.I32Const(0x7fffffff), wasmcode.Call(0)), wasmcode.Packed(errPayload, 2))})
	add("log-lines", "wingate.log of short lines, in an endless loop", FailsAtCall, Timeout, spec{
		imports: []importFn{importLog},
		decide:  wasmcode.Cat(forever(wasmcode.I32Const(8), wasmcode.I32Const(textAt), wasmcode.I32Const(64), wasmcode.Call(0)), wasmcode.Packed(errPayload, 2))})
	add("stdout-flood", "fd_write to stdout in an endless loop", FailsAtCall, Timeout, spec{
		imports: []importFn{importFdWrite},
		decide:  wasmcode.Cat(forever(wasmcode.I32Const(1), wasmcode.I32Const(iovAt), wasmcode.I32Const(1), wasmcode.I32Const(600), wasmcode.Call(0), drop()), wasmcode.Packed(errPayload, 2))})
	add("stderr-flood", "fd_write of the whole memory to stderr, in an endless loop", FailsAtCall, Timeout, spec{
		imports: []importFn{importFdWrite},
		data:    []*wasm.DataSegment{wasmcode.DataAt(iovAt+16, wasmcode.LE32(0, 65536))},
		decide:  wasmcode.Cat(forever(wasmcode.I32Const(2), wasmcode.I32Const(iovAt+16), wasmcode.I32Const(1), wasmcode.I32Const(600), wasmcode.Call(0), drop()), wasmcode.Packed(errPayload, 2))})
	add("fd-write-iovecs", "fd_write with half a billion iovecs", FailsAtCall, Timeout, spec{
		imports: []importFn{importFdWrite},
		decide:  wasmcode.Cat(forever(wasmcode.I32Const(1), wasmcode.I32Const(0), wasmcode.I32Const(0x1fffffff), wasmcode.I32Const(600), wasmcode.Call(0), drop()), wasmcode.Packed(errPayload, 2))})

	// Memory.
	grow := wasmcode.Cat(memorySize(), wasmcode.I32Const(1000), []byte{0x49}, ifThen(wasmcode.I32Const(999), memoryGrow(), drop())) // to 1,000 pages
	size := wasmcode.Cat(memorySize(), wasmcode.I32Const(16), []byte{0x74})                                                         // bytes
	add("memory-fill", "one memory.fill over 62.5 MiB", FailsAtCall, Timeout, spec{
		decide: wasmcode.Cat(grow, wasmcode.I32Const(0), wasmcode.I32Const(0xaa), size, memoryFill(), wasmcode.Packed(errPayload, 2))})
	add("memory-copy", "memory.copy over 62.5 MiB, forward and backward", FailsAtCall, Timeout, spec{
		decide: wasmcode.Cat(grow,
			wasmcode.I32Const(0), wasmcode.I32Const(1), size, wasmcode.I32Const(1), []byte{0x6b}, memoryCopy(),
			wasmcode.I32Const(1), wasmcode.I32Const(0), size, wasmcode.I32Const(1), []byte{0x6b}, memoryCopy(),
			wasmcode.Packed(errPayload, 2))})
	add("memory-fill-loop", "memory.fill over 62.5 MiB in an endless loop", FailsAtCall, Timeout, spec{
		decide: wasmcode.Cat(grow, forever(wasmcode.I32Const(0), wasmcode.I32Const(0x55), size, memoryFill()), wasmcode.Packed(errPayload, 2))})
	add("data-50mb", "a 50 MB data segment", RefusedAtLoad, "data", spec{
		memMin: 800, data: []*wasm.DataSegment{wasmcode.DataAt(1<<16, make([]byte, 50_000_000))}})
	add("memory-initial", "an initial memory of 800 pages (50 MiB), over the cap", RefusedAtLoad, "memory", spec{memMin: 800})
	add("data-9mib", "9 MiB of data segments in a memory within the initial cap", RefusedAtLoad, "data", spec{
		memMin: 200, data: []*wasm.DataSegment{wasmcode.DataAt(1<<16, make([]byte, 9<<20))}})
	add("memory-max", "a declared maximum memory over the cap", RefusedAtLoad, "memory", spec{memMax: 65536})
	add("memory-grow", "growing memory to the cap and answering", FailsAtCall, Memory, spec{
		decide: wasmcode.Cat(wasmcode.I32Const(4000), memoryGrow(), drop(), // over the cap: fails, -1
			memorySize(), wasmcode.I32Const(1024), []byte{0x49}, ifThen(wasmcode.I32Const(1024), memorySize(), []byte{0x6b}, memoryGrow(), drop()),
			wasmcode.Packed(bypassPayload, bypassLen))})

	// Decisions.
	const at = 4096
	lookup := func(key string, scope abi.Scope, tags ...string) []byte {
		return append([]byte{byte(abi.StatusOK)}, abi.AppendCacheDecision(nil, &abi.CacheDecision{
			Action: abi.CacheLookup, Key: key, TTLSeconds: 3600, Scope: scope, Tags: tags})...)
	}
	answer := func(p []byte) spec {
		return spec{data: []*wasm.DataSegment{wasmcode.DataAt(at, p)}, decide: wasmcode.Packed(at, uint32(len(p)))}
	}
	g := lookup("everyone", abi.ScopeGlobal)
	add("global-key", "a lookup under one global key for every caller", AnswersAtCall, "", answer(g))
	const big = 15 << 20
	add("key-15mib", "a lookup with a 15 MiB key", FailsAtCall, Invalid, spec{
		decide: wasmcode.Cat(
			memorySize(), wasmcode.I32Const(257), []byte{0x49}, ifThen(wasmcode.I32Const(257), memorySize(), []byte{0x6b}, memoryGrow(), drop()),
			wasmcode.I32Const(1<<16+1), wasmcode.I32Const(1), store8(0), // action lookup
			wasmcode.I32Const(1<<16+2), wasmcode.I32Const(big), store32(0), // key length
			wasmcode.Packed(1<<16, 1+1+4+big+4+1+4+4))})
	tags := append([]byte{byte(abi.StatusOK)}, abi.AppendCacheDecision(nil, &abi.CacheDecision{})...)
	copy(tags[len(tags)-4:], wasmcode.LE32(abi.MaxListLen)) // 65,536 empty tags: zeros follow
	add("tags-65536", "a decision with 65,536 tags", FailsAtCall, Invalid, spec{
		memMin: 6, data: []*wasm.DataSegment{wasmcode.DataAt(at, tags)}, decide: wasmcode.Packed(at, uint32(len(tags)+4*abi.MaxListLen))})
	add("tag-4kib", "a decision with a 4 KiB tag", FailsAtCall, Invalid, answer(lookup("k", abi.ScopeUser, string(make([]byte, 4096)))))
	add("garbage-decision", "garbage bytes as the decision", FailsAtCall, Invalid, answer([]byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x13, 0x37}))
	add("bad-status", "an unknown status byte", FailsAtCall, Invalid, answer([]byte{7, 0}))
	add("result-out-of-range", "a result pointer outside memory", FailsAtCall, Invalid, spec{decide: wasmcode.Packed(0xffffff00, 200)})
	add("empty-result", "an empty result", FailsAtCall, Invalid, spec{decide: wasmcode.Packed(at, 0)})

	// Already held.
	add("endless-loop", "an endless loop in wingate_decide", FailsAtCall, Timeout, spec{decide: wasmcode.Cat(forever(), wasmcode.Packed(errPayload, 2))})
	add("trap", "unreachable in wingate_decide", FailsAtCall, Trap, spec{decide: wasmcode.Cat(unreachable(), wasmcode.Packed(errPayload, 2))})
	add("proc-exit", "proc_exit from wingate_decide", FailsAtCall, Trap, spec{
		imports: []importFn{{"wasi_snapshot_preview1", "proc_exit", tI32}},
		decide:  wasmcode.Cat(wasmcode.I32Const(3), wasmcode.Call(0), wasmcode.Packed(errPayload, 2))})
	add("buffer-out-of-range", "wingate_buffer answering an address outside memory", RefusedAtLoad, "export wingate_init", spec{
		buffer: wasmcode.I32Const(-16)})
	add("init-error", "wingate_init answering an error", RefusedAtLoad, "init", spec{init: wasmcode.Packed(errPayload, 2)})
	add("unknown-import", "an import the host does not have", RefusedAtLoad, "import wingate.exec", spec{
		imports: []importFn{{abi.HostModule, "exec", tVoid}}})
	add("wasi-path-open", "a WASI file-system probe", RefusedAtLoad, "import wasi_snapshot_preview1.path_open", spec{
		imports: []importFn{{"wasi_snapshot_preview1", "path_open", tFdWrite}}})
	add("wasi-sock-accept", "a WASI socket probe", RefusedAtLoad, "import wasi_snapshot_preview1.sock_accept", spec{
		imports: []importFn{{"wasi_snapshot_preview1", "sock_accept", tLog}}})
	add("other-module-import", "an import from another module", RefusedAtLoad, "import env.system", spec{
		imports: []importFn{{"env", "system", tVoid}}})
	reserved := spec{}.module()
	reserved.ExportSection = append(reserved.ExportSection, &wasm.Export{Type: wasm.ExternTypeFunc, Name: "__wingate_start", Index: 0})
	out = append(out, Module{Name: "reserved-export", Class: "an export under a name the host reserves", Kind: abi.KindCache,
		Wasm: encode(reserved), Want: RefusedAtLoad, Item: "export __wingate_start"})
	for i := range out {
		switch out[i].Name {
		case "log-flood", "log-lines", "stdout-flood", "stderr-flood":
			out[i].Floods = true
		}
	}
	return out
}

func repeat(t wasm.ValueType, n int) []wasm.ValueType {
	out := make([]wasm.ValueType, n)
	for i := range out {
		out[i] = t
	}
	return out
}

// fatBody is fat(x i64) -> i64 with n locals all live across its
// recursive call: every local is set from x before the call and summed
// after it, so a compiler must keep them all in the frame.
func fatBody(n int) []byte {
	var b []byte
	for i := 1; i <= n; i++ {
		b = append(b, wasmcode.LocalGet(0)...)
		b = append(b, wasmcode.I64Const(int64(i))...)
		b = append(b, 0x7c) // i64.add
		b = append(b, wasmcode.LocalSet(uint32(i))...)
	}
	b = append(b, wasmcode.LocalGet(0)...)
	b = append(b, wasmcode.I64Const(1)...)
	b = append(b, 0x7c)
	b = append(b, wasmcode.Call(0)...)
	for i := 1; i <= n; i++ {
		b = append(b, wasmcode.LocalGet(uint32(i))...)
		b = append(b, 0x7c)
	}
	return b
}
