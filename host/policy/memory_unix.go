//go:build linux || darwin || freebsd

package policy

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mmapMemory backs an instance's linear memory with an anonymous mapping
// of the memory's maximum size, outside the Go heap. Growing is then a
// longer view of the same mapping, not a copy into a new slice (the Go
// runtime in a guest grows its memory several times while it starts),
// pages cost nothing until the guest touches them, and closing an
// instance gives its memory straight back to the system instead of
// leaving it for the garbage collector.
type mmapMemory struct{ buf []byte }

// newMmapMemory reserves max bytes; nil (wazero then allocates on the Go
// heap) if the mapping fails.
func newMmapMemory(_, max uint64) experimental.LinearMemory {
	if max == 0 || max > 1<<32 {
		return nil
	}
	buf, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|mapNoReserve)
	if err != nil {
		return nil
	}
	return &mmapMemory{buf: buf}
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		syscall.Munmap(m.buf)
		m.buf = nil
	}
}

// memoryAllocator is what instances are created with.
var memoryAllocator experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(func(cap, max uint64) experimental.LinearMemory {
	if m := newMmapMemory(cap, max); m != nil {
		return m
	}
	return &heapMemory{}
})
