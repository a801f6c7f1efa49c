//go:build !(linux || darwin || freebsd)

package policy

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator: linear memory on the Go heap.
var memoryAllocator experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(func(cap, max uint64) experimental.LinearMemory {
	return &heapMemory{}
})
