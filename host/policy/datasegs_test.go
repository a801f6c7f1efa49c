package policy

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	wbinary "github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/leb128"
	"github.com/tetratelabs/wabin/wasm"
	"github.com/tetratelabs/wazero"
)

// image applies m's data segments, in order, to a zeroed memory of size
// bytes, as instantiation does; false if a segment is not a constant
// offset within it.
func image(m *wasm.Module, size int) ([]byte, bool) {
	mem := make([]byte, size)
	for _, s := range m.DataSection {
		off, ok := constOffset(s)
		if !ok || uint64(off)+uint64(len(s.Init)) > uint64(size) {
			return nil, false
		}
		copy(mem[off:], s.Init)
	}
	return mem, true
}

func segment(off int32, init []byte) *wasm.DataSegment {
	return &wasm.DataSegment{OffsetExpression: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: leb128.EncodeInt32(off)}, Init: init}
}

func TestCoalesceData(t *testing.T) {
	ones := func(n int) []byte { return bytes.Repeat([]byte{1}, n) }
	cases := []struct {
		name string
		segs []*wasm.DataSegment
		want int // segments after; -1: left alone
	}{
		{"adjacent and small gaps", []*wasm.DataSegment{segment(0, ones(4)), segment(4, ones(4)), segment(100, ones(8))}, 1},
		{"out of order, disjoint", []*wasm.DataSegment{segment(200, ones(4)), segment(0, ones(4)), segment(100, ones(8))}, 1},
		{"gap over the limit", []*wasm.DataSegment{segment(0, ones(4)), segment(4+dataGap+1, ones(4))}, -1},
		{"gap at the limit", []*wasm.DataSegment{segment(0, ones(4)), segment(4+dataGap, ones(4)), segment(1<<20, ones(1))}, 2},
		{"overlapping: order matters", []*wasm.DataSegment{segment(0, ones(8)), segment(4, []byte{2, 2})}, -1},
		{"not a constant", []*wasm.DataSegment{segment(0, ones(4)), {OffsetExpression: &wasm.ConstantExpression{Opcode: wasm.OpcodeGlobalGet, Data: []byte{0}}, Init: ones(2)}}, -1},
		{"passive", []*wasm.DataSegment{segment(0, ones(4)), {Init: ones(2)}}, -1},
		{"one segment", []*wasm.DataSegment{segment(0, ones(4))}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &wasm.Module{DataSection: c.segs}
			before, _ := image(m, 2<<20)
			changed := coalesceData(m)
			if c.want < 0 {
				if changed || len(m.DataSection) != len(c.segs) {
					t.Fatalf("rewrote %d segments into %d; want them left alone", len(c.segs), len(m.DataSection))
				}
				return
			}
			if !changed || len(m.DataSection) != c.want {
				t.Fatalf("changed %v, %d segments; want %d", changed, len(m.DataSection), c.want)
			}
			after, ok := image(m, 2<<20)
			if !ok || !bytes.Equal(before, after) {
				t.Fatal("memory image differs after coalescing")
			}
		})
	}
	dc := uint32(2)
	m := &wasm.Module{DataSection: []*wasm.DataSegment{segment(0, ones(1)), segment(1, ones(1))}, DataCountSection: &dc}
	if coalesceData(m) {
		t.Error("coalesced a module with a data count section (instructions may name segments)")
	}
}

// FuzzCoalesceData: any list of segments is either left alone or
// rewritten into fewer segments writing the same memory image.
func FuzzCoalesceData(f *testing.F) {
	f.Add([]byte{0, 0, 4, 0, 10, 0, 4, 0})
	f.Add([]byte{0, 50, 4, 0, 0, 0, 100, 0, 0, 1, 1, 1})
	f.Fuzz(func(t *testing.T, spec []byte) {
		const size = 1 << 16
		var segs []*wasm.DataSegment
		for len(spec) >= 4 {
			off := binary.LittleEndian.Uint16(spec)
			n := int(spec[2])
			init := bytes.Repeat([]byte{spec[3] | 1}, n)
			if int(off)+n > size {
				n = size - int(off)
				init = init[:n]
			}
			segs = append(segs, segment(int32(off), init))
			spec = spec[4:]
		}
		m := &wasm.Module{DataSection: segs}
		before, _ := image(m, size)
		n := len(segs)
		if !coalesceData(m) {
			if len(m.DataSection) != n {
				t.Fatal("reported no change but changed the segments")
			}
			return
		}
		if len(m.DataSection) >= n {
			t.Fatalf("%d segments became %d", n, len(m.DataSection))
		}
		after, ok := image(m, size)
		if !ok || !bytes.Equal(before, after) {
			t.Fatal("memory image differs after coalescing")
		}
	})
}

// TestCoalescedGuestMemory instantiates the Go test guest's memory and
// data as built and coalesced (in a module of just those, so that the
// test does not spend its time compiling code): wazero must produce the
// same memory byte for byte, from far fewer segments.
func TestCoalescedGuestMemory(t *testing.T) {
	m, err := wbinary.DecodeModule(testGuest(t), wasm.CoreFeaturesV2)
	if err != nil {
		t.Fatal(err)
	}
	dataOnly := func(segs []*wasm.DataSegment) []byte {
		return wbinary.EncodeModule(&wasm.Module{
			MemorySection: m.MemorySection,
			DataSection:   segs,
			ExportSection: []*wasm.Export{{Name: "memory", Type: wasm.ExternTypeMemory}},
		})
	}
	built := dataOnly(m.DataSection)
	n := len(m.DataSection)
	if !coalesceData(m) {
		t.Fatalf("the Go guest's %d data segments were left alone", n)
	}
	t.Logf("data segments: %d → %d", n, len(m.DataSection))
	if len(m.DataSection)*100 > n {
		t.Errorf("%d segments became %d; want at least 100 times fewer", n, len(m.DataSection))
	}
	ctx := context.Background()
	wz := wazero.NewRuntime(ctx)
	defer wz.Close(ctx)
	memOf := func(bin []byte) []byte {
		mod, err := wz.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		defer mod.Close(ctx)
		b, _ := mod.Memory().Read(0, mod.Memory().Size())
		return bytes.Clone(b)
	}
	if a, b := memOf(built), memOf(dataOnly(m.DataSection)); !bytes.Equal(a, b) {
		t.Fatalf("memory differs: %d vs %d bytes", len(a), len(b))
	}
}
