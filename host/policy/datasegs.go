package policy

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/tetratelabs/wabin/leb128"
	"github.com/tetratelabs/wabin/wasm"
)

// dataGap is the longest run of zeros coalesceData writes explicitly to
// join two data segments. Go's wasm linker ends a segment at every run of
// zeros longer than a few bytes, so a Go guest carries tens of thousands
// of segments (37,646 in the default cache policy), and wazero evaluates
// and copies each one, allocating, on every instantiation: that was 80%
// of an instance's start. Joined across gaps of up to 4 KiB they become a
// few hundred, for a few percent more data.
const dataGap = 4 << 10

// coalesceData rewrites m's data section into fewer, longer segments that
// write the same bytes to memory, and reports whether it did. Linear
// memory starts zeroed, and segments that do not overlap may be applied
// in any order, so disjoint segments can be sorted and a gap between two
// written as zeros. It only touches the case every Go and TinyGo guest
// is: all segments active with i32.const offsets, no two overlapping,
// and no data count section (so no instruction names a segment by
// index). Anything else is left as it is.
func coalesceData(m *wasm.Module) bool {
	if len(m.DataSection) < 2 || m.DataCountSection != nil {
		return false
	}
	type seg struct {
		off  uint64
		init []byte
	}
	segs := make([]seg, len(m.DataSection))
	for i, s := range m.DataSection {
		off, ok := constOffset(s)
		if !ok {
			return false
		}
		segs[i] = seg{uint64(off), s.Init}
	}
	slices.SortStableFunc(segs, func(a, b seg) int { return cmp.Compare(a.off, b.off) })
	for i := 1; i < len(segs); i++ {
		if segs[i].off < segs[i-1].off+uint64(len(segs[i-1].init)) {
			return false // overlapping: the order of writes matters
		}
	}
	var out []*wasm.DataSegment
	for i := 0; i < len(segs); {
		start := segs[i].off
		stop := start + uint64(len(segs[i].init))
		j := i + 1
		for j < len(segs) && segs[j].off-stop <= dataGap {
			stop = segs[j].off + uint64(len(segs[j].init))
			j++
		}
		init := segs[i].init
		if j > i+1 {
			init = make([]byte, stop-start)
			for _, s := range segs[i:j] {
				copy(init[s.off-start:], s.init)
			}
		}
		out = append(out, &wasm.DataSegment{
			OffsetExpression: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: leb128.EncodeInt32(int32(uint32(start)))},
			Init:             init,
		})
		i = j
	}
	if len(out) == len(m.DataSection) {
		return false
	}
	m.DataSection = out
	return true
}

// constOffset returns an active segment's i32.const offset.
func constOffset(s *wasm.DataSegment) (uint32, bool) {
	e := s.OffsetExpression
	if e == nil || e.Opcode != wasm.OpcodeI32Const {
		return 0, false
	}
	r := bytes.NewReader(e.Data)
	v, _, err := leb128.DecodeInt32(r)
	if err != nil || r.Len() != 0 {
		return 0, false
	}
	return uint32(v), true
}
