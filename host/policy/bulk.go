package policy

import (
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
)

// bulkChunk is the most bytes one memory.fill or memory.copy of a guest
// touches between two guard checks. A single bulk instruction over a
// 64 MiB memory ran for tens of milliseconds with no loop header to stop
// it; in chunks of 64 KiB (a few microseconds each) the watchdog's halt
// flag and the budget are seen between chunks, and a slice of budget
// (sliceBudget) covers 8 chunks, so the refill reads the clock at least
// every 512 KiB (page faults are wall time no count sees).
const bulkChunk = 64 << 10

// maxCharge is the most budget one guard check takes (a full chunk); a
// slice must be larger. With the loops-only guard (no refill), a trap
// with less budget left than this is the guard's.
const maxCharge = bulkChunk/4 + 1

// appendBulk appends to m the two functions that replace memory.fill and
// memory.copy, of type (i32, i32, i32) -> (), and returns their indexes.
// Each checks the whole range first, so that an out-of-bounds
// instruction traps before writing anything, as the instruction does,
// then works in chunks of bulkChunk bytes inside a loop (which the loop
// guard then checks). memory.copy with overlapping ranges copies forward
// when the destination is below the source and backward otherwise, so
// every chunk reads bytes no earlier chunk has written.
//
// Each chunk also spends budget in proportion to its bytes (one unit per
// 4 bytes: a fill of 62.5 MiB ran at about 4 bytes a nanosecond on a
// busy machine), calling the refill function when the slice has less
// left, so that the host reads the clock every few chunks and the total
// ends a bulk instruction at about twice its deadline even if it did not.
func appendBulk(m *wasm.Module, nImportedFuncs uint32, g *guardConfig) (fill, copy uint32) {
	budget := g.budget
	typ := uint32(len(m.TypeSection))
	m.TypeSection = append(m.TypeSection, &wasm.FunctionType{Params: []wasm.ValueType{i32, i32, i32}})
	const (
		dst, src, n, c, k = 0, 1, 2, 3, 4 // locals; fill's value is local 1
	)
	get := func(l byte) []byte { return []byte{0x20, l} }
	set := func(l byte) []byte { return []byte{0x21, l} }
	chunk := wasmcode.AppendSLEB([]byte{0x41}, bulkChunk)
	// inBounds traps when [local a, a+n) lies outside memory.
	inBounds := func(a byte) []byte {
		return wasmcode.Cat(get(a), []byte{0xad}, get(n), []byte{0xad, 0x7c}, // i64(a) + i64(n)
			[]byte{0x3f, 0x00, 0xad, 0x42, 0x10, 0x86, 0x56}, // memory.size << 16; i64.gt_u
			[]byte{0x04, 0x40, 0x00, 0x0b})                   // if unreachable end
	}
	// minChunk sets c = min(n, bulkChunk).
	minChunk := wasmcode.Cat(get(n), chunk, get(n), chunk, []byte{0x49, 0x1b}, set(c))
	// spend takes c/4 + 1 from the budget, calling the refill function
	// (or trapping, without one) when it has less.
	gb := wasmcode.AppendULEB([]byte{0x23}, budget)
	spend := wasmcode.Cat(get(c), []byte{0x41, 0x02, 0x76, 0xad, 0x42, 0x01, 0x7c}, set(k), // k = i64(c >> 2) + 1
		gb, get(k), []byte{0x54, 0x04, 0x40}, g.coldPath(nil, 0), []byte{0x0b}, // if budget < k: refill end
		gb, get(k), []byte{0x7d}, wasmcode.AppendULEB([]byte{0x24}, budget))
	minChunk = wasmcode.Cat(minChunk, spend)
	// nextN sets n -= c and branches back while n != 0.
	nextN := wasmcode.Cat(get(n), get(c), []byte{0x6b, 0x22, n, 0x0d, 0x00})
	advance := func(l byte) []byte { return wasmcode.Cat(get(l), get(c), []byte{0x6a}, set(l)) }

	fillBody := wasmcode.Cat(inBounds(dst),
		[]byte{0x03, 0x40}, minChunk,
		get(dst), get(src), get(c), []byte{0xfc, 0x0b, 0x00},
		advance(dst), nextN,
		[]byte{0x0b, 0x0b})
	copyBody := wasmcode.Cat(inBounds(dst), inBounds(src),
		get(dst), get(src), []byte{0x4d, 0x04, 0x40}, // if dst <= src: forward
		[]byte{0x03, 0x40}, minChunk,
		get(dst), get(src), get(c), []byte{0xfc, 0x0a, 0x00, 0x00},
		advance(dst), advance(src), nextN,
		[]byte{0x0b},
		[]byte{0x05}, // else: backward, from the end
		[]byte{0x03, 0x40}, minChunk,
		get(n), get(c), []byte{0x6b}, set(n),
		get(dst), get(n), []byte{0x6a}, get(src), get(n), []byte{0x6a}, get(c), []byte{0xfc, 0x0a, 0x00, 0x00},
		get(n), []byte{0x0d, 0x00},
		[]byte{0x0b},
		[]byte{0x0b, 0x0b})
	base := nImportedFuncs + uint32(len(m.FunctionSection))
	m.FunctionSection = append(m.FunctionSection, typ, typ)
	m.CodeSection = append(m.CodeSection,
		&wasm.Code{LocalTypes: []wasm.ValueType{i32, i64}, Body: fillBody},
		&wasm.Code{LocalTypes: []wasm.ValueType{i32, i64}, Body: copyBody})
	return base, base + 1
}

// A slice must hold a full chunk's charge, or a bulk instruction could
// never make progress.
var _ = [sliceBudget - maxCharge - 1]struct{}{}
