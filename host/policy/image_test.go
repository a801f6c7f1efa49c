package policy

import (
	"bytes"
	"context"
	"testing"

	wbinary "github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// TestMemoryImage: the Go test guest's memory and data, instantiated as
// built and with the data taken out into a memory image the host lays in,
// give the same memory byte for byte; instances of one image do not see
// each other's writes (the mapping is private, copy-on-write).
func TestMemoryImage(t *testing.T) {
	m, err := wbinary.DecodeModule(testGuest(t), wasm.CoreFeaturesV2)
	if err != nil {
		t.Fatal(err)
	}
	dataOnly := func() []byte {
		return wbinary.EncodeModule(&wasm.Module{
			MemorySection: m.MemorySection,
			DataSection:   m.DataSection,
			ExportSection: []*wasm.Export{{Name: "memory", Type: wasm.ExternTypeMemory}},
		})
	}
	built := dataOnly()
	img := takeImage(m)
	if img == nil || len(m.DataSection) != 0 {
		t.Fatalf("image not taken: %d bytes, %d segments left", len(img), len(m.DataSection))
	}
	im := newMemoryImage(img)
	defer im.close()
	t.Logf("image of %d KiB, memory file: %v", len(img)>>10, im.fd >= 0)

	ctx := context.Background()
	wz := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(1024))
	defer wz.Close(ctx)
	start := func(bin []byte, alloc experimental.MemoryAllocator) api.Module {
		mod, err := wz.InstantiateWithConfig(experimental.WithMemoryAllocator(ctx, alloc), bin,
			wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		return mod
	}
	memOf := func(mod api.Module) []byte {
		b, _ := mod.Memory().Read(0, mod.Memory().Size())
		return bytes.Clone(b)
	}
	want := memOf(start(built, memoryAllocator))
	bare := dataOnly()
	a, b := start(bare, im.allocator()), start(bare, im.allocator())
	if got := memOf(a); !bytes.Equal(got, want) {
		t.Fatalf("memory from the image differs: %d vs %d bytes", len(got), len(want))
	}
	// Write over the image in a, then grow it: b and a new instance still
	// see the image.
	a.Memory().Write(0, bytes.Repeat([]byte{0xAB}, len(img)))
	if _, ok := a.Memory().Grow(16); !ok {
		t.Fatal("grow failed")
	}
	if got, _ := a.Memory().Read(0, uint32(len(img))); got[len(img)/2] != 0xAB {
		t.Fatal("a write was lost when the memory grew")
	}
	if got := memOf(b); !bytes.Equal(got, want) {
		t.Fatal("a write in one instance showed in another")
	}
	if got := memOf(start(bare, im.allocator())); !bytes.Equal(got, want) {
		t.Fatal("a write in one instance showed in a later one")
	}
}

func TestTakeImageLeavesUnsafeModulesAlone(t *testing.T) {
	one := func(off int32, n int) *wasm.DataSegment { return segment(off, bytes.Repeat([]byte{1}, n)) }
	cases := map[string]*wasm.Module{
		"overlapping":      {MemorySection: &wasm.Memory{Min: 1}, DataSection: []*wasm.DataSegment{one(0, 8), one(4, 8)}},
		"past the minimum": {MemorySection: &wasm.Memory{Min: 1, Max: 2}, DataSection: []*wasm.DataSegment{one(wasmPage-4, 8)}},
		"not a constant":   {MemorySection: &wasm.Memory{Min: 1}, DataSection: []*wasm.DataSegment{{OffsetExpression: &wasm.ConstantExpression{Opcode: wasm.OpcodeGlobalGet, Data: []byte{0}}, Init: []byte{1}}}},
		"passive":          {MemorySection: &wasm.Memory{Min: 1}, DataSection: []*wasm.DataSegment{{Init: []byte{1}}}},
	}
	for name, m := range cases {
		n := len(m.DataSection)
		if img := takeImage(m); img != nil || len(m.DataSection) != n {
			t.Errorf("%s: image of %d bytes taken", name, len(img))
		}
	}
	m := &wasm.Module{MemorySection: &wasm.Memory{Min: 1}, DataSection: []*wasm.DataSegment{one(8, 4), one(0, 2)}}
	if img := takeImage(m); !bytes.Equal(img, []byte{1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1}) {
		t.Errorf("image %v", img)
	}
}
