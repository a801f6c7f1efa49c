package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
)

// The loop guard. At load time every function body is rewritten so that
// each loop header begins with
//
//	global.get $halt
//	global.get $budget
//	i64.eqz
//	i32.or
//	if
//	  i32.const 0
//	  call $refill
//	end
//	global.get $budget
//	i64.const 1
//	i64.sub
//	global.set $budget
//
// where $budget is a mutable i64 global added to the module and exported as
// stopGlobalName, the work the call may still do before it must ask the
// host for more, $halt a mutable i32 global exported as haltGlobalName,
// and $refill a host function the rewrite imports (internalModule.
// refillName, hostRefill; guests may not import from internalModule).
// The host arms the budget before every call with one slice
// (sliceBudget); when the guest has spent it, the check calls $refill,
// which ends the call (a trap) when halt is set, when the call's
// deadline has passed by the clock, or when the call has had its whole
// budget (loopBudget of the deadline), and otherwise gives it another
// slice. The watchdog sets halt on an instance whose call has overrun
// its deadline, and the guest stops at its next loop iteration; the
// instance is then discarded. Every call that may start unbounded work
// (call_indirect, and call of a function that calls) gets the call check
// (callCheck), which also counts the call depth left in a third global
// ($depth, exported as depthGlobalName), so that call trees without
// loops stop at the deadline and recursion traps at
// Options.MaxCallDepth. memory.fill and memory.copy become calls to
// chunked functions (bulk.go) that spend budget by the byte. Straight-line
// code needs no check: it ends. The checks' hot path is what it was
// before slices (the refill runs once a slice); a loop header costs
// about a nanosecond.
//
// Why a separate halt flag: the guest writes the budget back at every
// iteration, so a zero the host writes between the guest's load and its
// store is overwritten, and with the loads and the store of a tight loop
// that window is most of the iteration. A budget-only guard let a runaway
// call live until its budget ran out, several milliseconds past the
// deadline; the guest never writes halt.
//
// Why slices and a host function: a goroutine running compiled guest
// code cannot be preempted by the Go scheduler, so when a garbage
// collection stops the world while a guest spins, the watchdog goroutine
// is stopped too and cannot set halt, and every other goroutine of the
// process waits for the guest to come back to Go. With the whole
// deadline's budget armed at once (2 units per nanosecond), the guest
// came back only when it had spent it, and that is CPU work, not wall
// time: under load, calls ran 0.25-1.4 s against a 2 ms deadline and the
// process stood still for up to 422 ms. The refill function runs in Go,
// so a pending stop-the-world pause completes there, at most one slice
// of guest work (about 130 µs of an empty loop, 512 KiB of a bulk
// instruction) after it began, and the refill reads the clock, so a
// guest ends at its deadline even when the watchdog is late. The total
// (loopBudget) still ends a call by itself at about twice its deadline
// of empty iterations, were the clock ever not read.

// stopGlobalName and haltGlobalName are the exports under which the host
// finds the loop budget and the halt flag. Guests may not export these
// names themselves.
const (
	stopGlobalName  = "__wingate_stop"
	haltGlobalName  = "__wingate_halt"
	depthGlobalName = "__wingate_depth"
	// startExportName exports a module's start function, which the
	// rewrite takes out of the start section so that the host runs it
	// under a deadline (see prepare).
	startExportName = "__wingate_start"
	// internalModule and refillName name the host function the rewrite
	// imports for the guard (hostRefill). Guests may not import from
	// internalModule themselves.
	internalModule = "wingate_internal"
	refillName     = "refill"
)

// loopBudget is the most budget a call with deadline d may have in all,
// over its slices: 2 units per nanosecond of the deadline. An iteration
// of guarded code costs about a nanosecond (the guard alone is a load, a
// test, a branch and a read-modify-write of the global;
// TestRunawayDuringGarbageCollection measured 0.96 ns for an empty loop),
// so the total ends a spinning guest at about twice its deadline even if
// neither the watchdog nor the refill's clock stopped it. It is not
// lowered further: a chunk of a bulk instruction is charged by its bytes
// (one unit per 4), and a fill of cached memory runs faster than 8 bytes
// a nanosecond, so a lower total could end a fill that would have met
// its deadline.
func loopBudget(d time.Duration) uint64 {
	const minBudget = 1 << 21
	b := uint64(d.Nanoseconds()) * 2
	if b < minBudget {
		b = minBudget
	}
	return b
}

// sliceBudget is the budget one slice gives a call: the guard calls the
// host's refill function (hostRefill) when it runs out, after about
// 130 µs of an empty loop, 8 chunks (512 KiB) of a bulk instruction or
// 16,384 guarded calls; a loop whose body does more work per iteration
// makes its slices longer in time (a unit is one iteration, whatever
// the body), and the watchdog's halt flag, checked at every iteration,
// is what stops it at its deadline. The default policies' decisions fit
// in one slice (BenchmarkGuard reports refills/op).
const sliceBudget = 1 << 17

var errGuardOpcode = errors.New("unsupported instruction")

// noFunc marks a guard function index as absent.
const noFunc = ^uint32(0)

// guardConfig says how guardBody rewrites a function body.
type guardConfig struct {
	// budget, halt and depth are the indexes of the guard globals.
	budget, halt, depth uint32
	// calls guards call sites (see callCheck); off, only loop headers are
	// guarded (the guard before call sites were, kept for BenchmarkGuard).
	calls bool
	// skipCall reports a direct callee that needs no check: an import
	// (the host bounds its own functions) or a function without calls
	// (it ends by itself or at a guarded loop, and adds one frame).
	skipCall func(idx uint32) bool
	// depthCost returns the depth units a call (op 0x10, callee idx) or
	// call_indirect (op 0x11) takes; nil: one.
	depthCost func(op byte, idx uint32) uint32
	// fill and copy are the functions that replace memory.fill and
	// memory.copy, or noFunc to leave those instructions alone.
	fill, copy uint32
	// refill is the index of the imported host function the checks call
	// when the budget runs out of a slice (see hostRefill); with
	// useRefill false they trap instead (the loops-only guard).
	refill    uint32
	useRefill bool
	// shiftFrom: with shift set, function indexes at or above shiftFrom
	// in call and ref.func instructions grow by one (the refill import
	// takes the first index after the other imports).
	shiftFrom uint32
	shift     bool
}

// coldPath appends the body of the check's "if": a call of the refill
// function with the call depth the site needs (0 for a loop header or a
// chunk), or a trap without refill.
func (g *guardConfig) coldPath(b []byte, depth uint32) []byte {
	if !g.useRefill {
		return append(b, 0x00) // unreachable
	}
	b = append(b, 0x41) // i32.const depth
	b = wasmcode.AppendSLEB(b, int64(depth))
	b = append(b, 0x10) // call $refill
	return wasmcode.AppendULEB(b, g.refill)
}

// funcIndex maps a function index of the original module to the
// rewritten one.
func (g *guardConfig) funcIndex(idx uint32) uint32 {
	if g.shift && idx >= g.shiftFrom {
		return idx + 1
	}
	return idx
}

// instr is one decoded instruction of a function body: its opcode, the
// sub-opcode of a prefixed one, the first immediate of a call, and its
// byte range.
type instr struct {
	op         byte
	sub        uint64
	imm        uint64
	start, end int
}

// walkCode decodes body instruction by instruction and hands each to fn.
// It fails on instructions it cannot decode rather than guessing.
func walkCode(body []byte, fn func(instr)) error {
	r := codeReader{b: body}
	for r.pos < len(r.b) {
		in := instr{start: r.pos}
		op := r.byte()
		in.op = op
		switch {
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
			r.blockType()
		case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1:
		case op == 0x10 || op == 0x12: // call, return_call
			in.imm = r.uleb()
		case op == 0x0c || op == 0x0d: // br, br_if
			r.uleb()
		case op == 0xd2: // ref.func
			in.imm = r.uleb()
		case op == 0x0e: // br_table
			n := r.uleb()
			for i := uint64(0); i <= n && r.err == nil; i++ {
				r.uleb()
			}
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			in.imm = r.uleb()
			r.uleb()
		case op == 0x1c: // select t*
			n := r.uleb()
			for i := uint64(0); i < n && r.err == nil; i++ {
				r.byte()
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
			r.uleb()
		case op >= 0x28 && op <= 0x3e: // loads and stores
			r.memarg()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			r.uleb()
		case op == 0x41 || op == 0x42: // i32.const, i64.const
			r.uleb()
		case op == 0x43:
			r.skip(4)
		case op == 0x44:
			r.skip(8)
		case op >= 0x45 && op <= 0xc4: // numeric, no immediates
		case op == 0xd0: // ref.null t
			r.byte()
		case op == 0xfc:
			in.sub, in.imm = r.prefixFC()
		case op == 0xfd:
			r.prefixFD()
		default:
			r.fail(fmt.Errorf("%w 0x%02x at offset %d", errGuardOpcode, op, r.pos-1))
		}
		if r.err != nil {
			return r.err
		}
		in.end = r.pos
		fn(in)
	}
	return nil
}

// hasCall reports whether body contains a call instruction.
func hasCall(body []byte) (bool, error) {
	found := false
	err := walkCode(body, func(in instr) {
		if in.op >= 0x10 && in.op <= 0x13 {
			found = true
		}
	})
	return found, err
}

// loopCheck is the check at a loop header: when halted or out of
// budget, call the refill function (which ends the call or refills the
// budget), else spend one unit of budget.
func loopCheck(g *guardConfig) []byte {
	check := make([]byte, 0, 40)
	check = append(check, 0x23) // global.get $halt
	check = wasmcode.AppendULEB(check, g.halt)
	check = append(check, 0x23) // global.get $budget
	check = wasmcode.AppendULEB(check, g.budget)
	check = append(check, 0x50)       // i64.eqz
	check = append(check, 0x72)       // i32.or
	check = append(check, 0x04, 0x40) // if (empty)
	check = g.coldPath(check, 0)
	check = append(check, 0x0b) // end
	return appendSpend(check, g)
}

func appendSpend(check []byte, g *guardConfig) []byte {
	check = append(check, 0x23) // global.get $budget
	check = wasmcode.AppendULEB(check, g.budget)
	check = append(check, 0x42, 0x01, 0x7d) // i64.const 1, i64.sub
	check = append(check, 0x24)             // global.set $budget
	return wasmcode.AppendULEB(check, g.budget)
}

// callCost is the budget a guarded call spends: a call and return cost
// a few nanoseconds where an empty loop iteration costs one, so that a
// call tree reaches the refill (and its clock) about as often in time
// as a loop does, and runs out of its total (see loopBudget) at about
// twice its deadline. It must stay below 64 (one byte
// of signed LEB128).
const callCost = 8

// callCheck is the check before a guarded call: when halted, out of
// budget or short of depth for the callee's frame, call the refill
// function with the depth the call needs (it ends the call, or refills
// the budget), then spend callCost of the budget and depth units of the
// depth left; after, the call gives the depth back.
func callCheck(g *guardConfig, depth uint32) (before, after []byte) {
	before = append(before, 0x23) // global.get $halt
	before = wasmcode.AppendULEB(before, g.halt)
	before = append(before, 0x23) // global.get $budget
	before = wasmcode.AppendULEB(before, g.budget)
	before = append(before, 0x42, callCost, 0x54, 0x72) // i64.const callCost, i64.lt_u, i32.or
	before = append(before, 0x23)                       // global.get $depth
	before = wasmcode.AppendULEB(before, g.depth)
	before = append(before, 0x41) // i32.const depth
	before = wasmcode.AppendSLEB(before, int64(depth))
	before = append(before, 0x49, 0x72) // i32.lt_u, i32.or
	before = append(before, 0x04, 0x40) // if (empty)
	before = g.coldPath(before, depth)  // refill or trap
	before = append(before, 0x0b)       // end
	before = append(before, 0x23)       // global.get $budget
	before = wasmcode.AppendULEB(before, g.budget)
	before = append(before, 0x42, callCost, 0x7d) // i64.const callCost, i64.sub
	before = append(before, 0x24)                 // global.set $budget
	before = wasmcode.AppendULEB(before, g.budget)
	before = append(before, 0x23) // global.get $depth
	before = wasmcode.AppendULEB(before, g.depth)
	before = append(before, 0x41) // i32.const depth
	before = wasmcode.AppendSLEB(before, int64(depth))
	before = append(before, 0x6b) // i32.sub
	before = append(before, 0x24) // global.set $depth
	before = wasmcode.AppendULEB(before, g.depth)

	after = append(after, 0x23) // global.get $depth
	after = wasmcode.AppendULEB(after, g.depth)
	after = append(after, 0x41) // i32.const depth
	after = wasmcode.AppendSLEB(after, int64(depth))
	after = append(after, 0x6a) // i32.add
	after = append(after, 0x24) // global.set $depth
	after = wasmcode.AppendULEB(after, g.depth)
	return before, after
}

// frameLocals is how many locals (parameters included) one unit of call
// depth stands for: a call takes 1 + locals/frameLocals units, so that
// the depth limit bounds the stack a recursion can hold, not only its
// frame count (a function with 2,000 live i64 locals grew wazero's stack
// by 16 KB a frame, and at 64 locals a unit such a recursion still ran
// 37 ms past a 2 ms deadline; at 16, under 5 ms sequentially, but with
// 16 callers 24-51 ms against a 10 ms deadline; at 4, 7.7 ms alone and
// 22 ms with 16 callers). A function of 100 locals may still nest 630
// deep.
const frameLocals = 4

// guardBody returns body with the loop check after every loop
// instruction's block type and, when g.calls, the call check around
// every call that g.skipCall does not exempt; memory.fill and
// memory.copy become calls to g.fill and g.copy when those are set.
func guardBody(body []byte, g *guardConfig) ([]byte, error) {
	check := loopCheck(g)
	type wrap struct{ before, after []byte }
	wraps := map[uint32]wrap{}
	wrapFor := func(op byte, idx uint32) wrap {
		depth := uint32(1)
		if g.depthCost != nil {
			depth = g.depthCost(op, idx)
		}
		w, ok := wraps[depth]
		if !ok {
			w.before, w.after = callCheck(g, depth)
			wraps[depth] = w
		}
		return w
	}
	out := make([]byte, 0, len(body)+len(body)/8+8)
	last := 0
	err := walkCode(body, func(in instr) {
		switch {
		case in.op == 0x03:
			out = append(out, body[last:in.end]...)
			out = append(out, check...)
			last = in.end
		case g.calls && (in.op == 0x11 || (in.op == 0x10 && (g.skipCall == nil || !g.skipCall(uint32(in.imm))))):
			w := wrapFor(in.op, uint32(in.imm))
			out = append(out, body[last:in.start]...)
			out = append(out, w.before...)
			out = g.appendCall(out, body, in)
			out = append(out, w.after...)
			last = in.end
		case g.shift && (in.op == 0x10 || in.op == 0x12 || in.op == 0xd2): // call, return_call, ref.func
			out = append(out, body[last:in.start]...)
			out = g.appendCall(out, body, in)
			last = in.end
		case in.op == 0xfc && in.sub == 11 && g.fill != noFunc: // memory.fill
			out = append(out, body[last:in.start]...)
			out = append(out, 0x10)
			out = wasmcode.AppendULEB(out, g.fill)
			last = in.end
		case in.op == 0xfc && in.sub == 10 && g.copy != noFunc: // memory.copy
			out = append(out, body[last:in.start]...)
			out = append(out, 0x10)
			out = wasmcode.AppendULEB(out, g.copy)
			last = in.end
		}
	})
	if err != nil {
		return nil, err
	}
	return append(out, body[last:]...), nil
}

// appendCall appends instruction in of body with its function index
// renumbered (see funcIndex).
func (g *guardConfig) appendCall(out, body []byte, in instr) []byte {
	if !g.shift || (in.op != 0x10 && in.op != 0x12 && in.op != 0xd2) {
		return append(out, body[in.start:in.end]...)
	}
	out = append(out, in.op)
	return wasmcode.AppendULEB(out, g.funcIndex(uint32(in.imm)))
}

// codeReader walks instruction immediates with a sticky error.
type codeReader struct {
	b   []byte
	pos int
	err error
}

var errGuardShort = errors.New("unexpected end inside an instruction or entry")

func (r *codeReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.pos = len(r.b)
}

func (r *codeReader) byte() byte {
	if r.pos >= len(r.b) {
		r.fail(errGuardShort)
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *codeReader) skip(n int) {
	if len(r.b)-r.pos < n {
		r.fail(errGuardShort)
		return
	}
	r.pos += n
}

// uleb reads a LEB128 number of at most 10 bytes (signed or unsigned:
// only its length matters, except for counts).
func (r *codeReader) uleb() uint64 { return r.leb(10) }

// leb reads a LEB128 number of at most max bytes.
func (r *codeReader) leb(max int) uint64 {
	var v uint64
	for i := 0; i < max; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(errors.New("LEB128 number too long"))
	return 0
}

// blockType reads an empty type (0x40), a value type, or a type index
// encoded as a signed LEB128.
func (r *codeReader) blockType() {
	if r.pos >= len(r.b) {
		r.fail(errGuardShort)
		return
	}
	switch r.b[r.pos] {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		r.pos++
	default:
		r.uleb()
	}
}

func (r *codeReader) memarg() {
	align := r.uleb()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.uleb()
	}
	r.uleb()
}

// prefixFC reads a 0xfc instruction and returns its sub-opcode and
// first immediate.
func (r *codeReader) prefixFC() (sub, imm uint64) {
	sub = r.uleb()
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data mem
		imm = r.uleb()
		r.uleb()
	case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17: // data.drop, elem.drop, table.grow/size/fill
		imm = r.uleb()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		imm = r.uleb()
		r.uleb()
	case sub == 11: // memory.fill
		imm = r.uleb()
	default:
		r.fail(fmt.Errorf("%w 0xfc %d", errGuardOpcode, sub))
	}
	return sub, imm
}

func (r *codeReader) prefixFD() {
	sub := r.uleb()
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // v128 loads and stores
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.skip(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.skip(1)
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.skip(1)
	case sub <= 275:
	default:
		r.fail(fmt.Errorf("%w 0xfd %d", errGuardOpcode, sub))
	}
}
