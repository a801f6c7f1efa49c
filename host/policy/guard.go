package policy

import (
	"errors"
	"fmt"
	"time"
)

// The loop guard. At load time every function body is rewritten so that
// each loop header begins with
//
//	global.get $halt
//	global.get $budget
//	i64.eqz
//	i32.or
//	if
//	  unreachable
//	end
//	global.get $budget
//	i64.const 1
//	i64.sub
//	global.set $budget
//
// where $budget is a mutable i64 global added to the module and exported as
// stopGlobalName, the number of loop iterations the call may still run,
// and $halt a mutable i32 global exported as haltGlobalName. The host arms
// the budget before every call (see loopBudget); the watchdog sets halt on
// an instance whose call has overrun its deadline, and the guest traps at
// its next loop iteration; the instance is then discarded. Straight-line
// code needs no check: it ends, and recursion ends in a stack-overflow
// trap.
//
// Why a separate halt flag: the guest writes the budget back at every
// iteration, so a zero the host writes between the guest's load and its
// store is overwritten, and with the loads and the store of a tight loop
// that window is most of the iteration. A budget-only guard let a runaway
// call live until its budget ran out, several milliseconds past the
// deadline; the guest never writes halt.
//
// Why a count and not only a flag: a goroutine running compiled guest
// code cannot be preempted by the Go scheduler, so when a garbage
// collection stops the world while a guest spins, the watchdog goroutine
// is stopped too and could never set a flag: the process would hang. The
// count needs no other goroutine: a spinning guest exhausts it by itself
// and traps, which lets the stop-the-world pause complete.

// stopGlobalName and haltGlobalName are the exports under which the host
// finds the loop budget and the halt flag. Guests may not export these
// names themselves.
const (
	stopGlobalName = "__wingate_stop"
	haltGlobalName = "__wingate_halt"
)

// loopBudget is the number of loop iterations a call with deadline d may
// run before it traps by itself: 2 per nanosecond of the deadline. An
// iteration of guarded code costs about a nanosecond (the guard alone is a
// load, a test, a branch and a read-modify-write of the global;
// TestRunawayDuringGarbageCollection measured 0.96 ns for an empty loop),
// so the count ends a spinning guest at about twice its deadline even
// when the watchdog cannot run, and a loop that does real work per
// iteration has its deadline enforced by the watchdog long before the
// count runs out.
func loopBudget(d time.Duration) uint64 {
	const minBudget = 1 << 21
	b := uint64(d.Nanoseconds()) * 2
	if b < minBudget {
		b = minBudget
	}
	return b
}

var errGuardOpcode = errors.New("unsupported instruction")

// guardBody returns body with the stop check inserted after every loop
// instruction's block type. global and halt are the indexes of the budget
// global and the halt flag. It fails on instructions it cannot decode
// rather than guessing.
func guardBody(body []byte, global, halt uint32) ([]byte, error) {
	check := make([]byte, 0, 32)
	check = append(check, 0x23) // global.get $halt
	check = appendULEB(check, halt)
	check = append(check, 0x23) // global.get $budget
	check = appendULEB(check, global)
	check = append(check, 0x50)                   // i64.eqz
	check = append(check, 0x72)                   // i32.or
	check = append(check, 0x04, 0x40, 0x00, 0x0b) // if (empty) unreachable end
	check = append(check, 0x23)                   // global.get $budget
	check = appendULEB(check, global)
	check = append(check, 0x42, 0x01, 0x7d) // i64.const 1, i64.sub
	check = append(check, 0x24)             // global.set $budget
	check = appendULEB(check, global)

	out := make([]byte, 0, len(body)+len(body)/16+8)
	r := codeReader{b: body}
	last := 0
	for r.pos < len(r.b) {
		op := r.byte()
		switch {
		case op == 0x03: // loop bt
			r.blockType()
			if r.err != nil {
				break
			}
			out = append(out, body[last:r.pos]...)
			out = append(out, check...)
			last = r.pos
		case op == 0x02 || op == 0x04: // block, if
			r.blockType()
		case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1:
		case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || op == 0xd2: // br, br_if, call, return_call, ref.func
			r.uleb()
		case op == 0x0e: // br_table
			n := r.uleb()
			for i := uint64(0); i <= n && r.err == nil; i++ {
				r.uleb()
			}
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			r.uleb()
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
			r.prefixFC()
		case op == 0xfd:
			r.prefixFD()
		default:
			r.fail(fmt.Errorf("%w 0x%02x at offset %d", errGuardOpcode, op, r.pos-1))
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	return append(out, body[last:]...), nil
}

func appendULEB(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
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

func (r *codeReader) prefixFC() {
	sub := r.uleb()
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data mem
		r.uleb()
		r.uleb()
	case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17: // data.drop, elem.drop, table.grow/size/fill
		r.uleb()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.uleb()
		r.uleb()
	case sub == 11: // memory.fill
		r.uleb()
	default:
		r.fail(fmt.Errorf("%w 0xfc %d", errGuardOpcode, sub))
	}
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
