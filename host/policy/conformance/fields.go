package conformance

import (
	"fmt"
	"math"

	"github.com/wingman-app/wingate/sdk/abi"
)

// A field-by-field reader of a guest's decision bytes: where package abi
// says "input too short", this says which field of which type is wrong,
// at which byte, which is what an author needs to fix an encoder.
type fieldReader struct {
	typ string
	b   []byte
	off int
	err error
}

func (r *fieldReader) fail(field, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: field %s at byte %d: %s", r.typ, field, r.off, fmt.Sprintf(format, args...))
	}
}

func (r *fieldReader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.fail(field, "needs %d bytes, %d left", n, len(r.b)-r.off)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *fieldReader) u32(field string) uint32 {
	b := r.take(field, 4)
	if b == nil {
		return 0
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (r *fieldReader) enum(field string, max uint8, names string) uint8 {
	b := r.take(field, 1)
	if b == nil {
		return 0
	}
	if b[0] > max {
		r.off--
		r.fail(field, "value %d out of range (%s)", b[0], names)
	}
	return b[0]
}

func (r *fieldReader) str(field string) string {
	n := r.u32(field + " (length)")
	if r.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.off -= 4
		r.fail(field, "string length %d but %d bytes left", n, len(r.b)-r.off-4)
		return ""
	}
	return string(r.take(field, int(n)))
}

func (r *fieldReader) count(field string, min int) int {
	n := r.u32(field + " (count)")
	if r.err != nil {
		return 0
	}
	if n > abi.MaxListLen {
		r.off -= 4
		r.fail(field, "count %d over the limit of %d", n, abi.MaxListLen)
		return 0
	}
	if uint64(n)*uint64(min) > uint64(len(r.b)-r.off) {
		r.off -= 4
		r.fail(field, "count %d needs at least %d bytes, %d left", n, uint64(n)*uint64(min), len(r.b)-r.off-4)
		return 0
	}
	return int(n)
}

func (r *fieldReader) end(last string) error {
	if r.err == nil && r.off != len(r.b) {
		r.err = fmt.Errorf("%s: %d bytes after the last field (%s) at byte %d", r.typ, len(r.b)-r.off, last, r.off)
	}
	return r.err
}

// checkCacheDecision checks a cache decision's encoding and its rules.
func checkCacheDecision(b []byte) error {
	r := fieldReader{typ: "cache decision", b: b}
	action := r.enum("action", 1, "0 bypass, 1 lookup")
	keyAt := r.off
	key := r.str("key")
	r.u32("ttl_s")
	r.enum("scope", 1, "0 global, 1 user")
	r.u32("stale_s")
	n := r.count("tags", 4)
	for i := 0; i < n && r.err == nil; i++ {
		r.str(fmt.Sprintf("tags[%d]", i))
	}
	if err := r.end("tags"); err != nil {
		return err
	}
	if action == uint8(abi.CacheLookup) && key == "" {
		return fmt.Errorf("cache decision: field key at byte %d: empty for a lookup (a lookup needs a key)", keyAt)
	}
	return nil
}

// checkRouteDecision checks a route decision's encoding and score.
func checkRouteDecision(b []byte) error {
	r := fieldReader{typ: "route decision", b: b}
	r.enum("tier", 2, "0 economy, 1 standard, 2 premium")
	scoreAt := r.off
	sb := r.take("score", 8)
	r.str("reason")
	if err := r.end("reason"); err != nil {
		return err
	}
	bits := uint64(0)
	for i := 7; i >= 0; i-- {
		bits = bits<<8 | uint64(sb[i])
	}
	if s := math.Float64frombits(bits); !(s >= 0 && s <= 1) {
		return fmt.Errorf("route decision: field score at byte %d: %v is outside [0, 1]", scoreAt, s)
	}
	return nil
}

// checkCompressDecision checks a compress decision's encoding and checks
// it against its request as the host does.
func checkCompressDecision(b []byte, req *abi.CompressRequest) error {
	r := fieldReader{typ: "compress decision", b: b}
	n := r.count("keep", 4)
	keep := make([]uint32, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		keep = append(keep, r.u32(fmt.Sprintf("keep[%d]", i)))
	}
	r.str("summary")
	tokens := r.u32("tokens")
	if err := r.end("tokens"); err != nil {
		return err
	}
	var kept uint64
	for i, k := range keep {
		if int(k) >= len(req.Messages) {
			return fmt.Errorf("compress decision: field keep[%d]: index %d out of range (%d messages)", i, k, len(req.Messages))
		}
		if i > 0 && k <= keep[i-1] {
			return fmt.Errorf("compress decision: field keep[%d]: %d not above %d (indexes must be strictly ascending)", i, k, keep[i-1])
		}
		kept += uint64(req.Messages[k].Tokens)
	}
	if tokens > req.BudgetTokens {
		return fmt.Errorf("compress decision: field tokens: %d over the budget of %d", tokens, req.BudgetTokens)
	}
	if kept > uint64(tokens) {
		return fmt.Errorf("compress decision: field tokens: %d, but the kept messages hold %d", tokens, kept)
	}
	return nil
}
