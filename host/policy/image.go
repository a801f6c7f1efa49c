package policy

import (
	"cmp"
	"slices"

	"github.com/tetratelabs/wabin/wasm"
	"github.com/tetratelabs/wazero/experimental"
)

// memoryImage is the initial contents of a module's linear memory: what
// its data segments write. The host takes the segments out of the module
// it compiles and lays the image into each instance's memory itself. On
// Linux the image is a memory file mapped copy-on-write into every
// instance, so that starting one copies nothing and pages the guest only
// reads (most of a Go guest's data is read-only) are shared between all
// instances; elsewhere it is copied in.
type memoryImage struct {
	data []byte
	fd   int // memory file holding data, or -1
}

// takeImage removes m's data segments and returns the image they write,
// when that is safe: every segment active at a constant offset, none
// overlapping another (so the order of writes does not matter, see
// coalesceData), no data count section, and all within the initial
// memory, so that instantiation could not have failed on them. Otherwise
// m is left as it is and the image is nil.
func takeImage(m *wasm.Module) []byte {
	if len(m.DataSection) == 0 || m.DataCountSection != nil || m.MemorySection == nil {
		return nil
	}
	type span struct{ off, end uint64 }
	spans := make([]span, 0, len(m.DataSection))
	for _, s := range m.DataSection {
		off, ok := constOffset(s)
		if !ok {
			return nil
		}
		spans = append(spans, span{uint64(off), uint64(off) + uint64(len(s.Init))})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	for i := 1; i < len(spans); i++ {
		if spans[i].off < spans[i-1].end {
			return nil
		}
	}
	size := spans[len(spans)-1].end
	if size > uint64(m.MemorySection.Min)*wasmPage {
		return nil
	}
	img := make([]byte, size)
	for _, s := range m.DataSection {
		off, _ := constOffset(s)
		copy(img[off:], s.Init)
	}
	m.DataSection = nil
	return img
}

const wasmPage = 64 << 10

// allocator returns the memory allocator instances of the module are
// created with: the default one when there is no image.
func (im *memoryImage) allocator() experimental.MemoryAllocator {
	if im == nil {
		return memoryAllocator
	}
	return experimental.MemoryAllocatorFunc(im.allocate)
}

// allocate returns a linear memory holding the image.
func (im *memoryImage) allocate(cap, max uint64) experimental.LinearMemory {
	if m := im.mapMemory(max); m != nil {
		return m
	}
	m := memoryAllocator.Allocate(cap, max)
	copy(m.Reallocate(uint64(len(im.data))), im.data)
	return m
}
