package policy

import (
	"os"
	"syscall"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// newMemoryImage puts data in a memory file (memfd_create); when that
// fails the image is copied into each instance instead.
func newMemoryImage(data []byte) *memoryImage {
	im := &memoryImage{data: data, fd: -1}
	fd, err := unix.MemfdCreate("wingate-policy-image", unix.MFD_CLOEXEC)
	if err != nil {
		return im
	}
	size := roundPage(len(data))
	ok := syscall.Ftruncate(int(fd), int64(size)) == nil
	for off := 0; ok && off < len(data); {
		n, err := syscall.Pwrite(int(fd), data[off:], int64(off))
		ok = err == nil && n > 0
		off += n
	}
	if !ok {
		syscall.Close(int(fd))
		return im
	}
	im.fd = int(fd)
	return im
}

func roundPage(n int) int {
	p := os.Getpagesize()
	return (n + p - 1) / p * p
}

// mapMemory reserves max bytes and maps the image copy-on-write over
// their start; nil if the image has no file or a mapping fails.
func (im *memoryImage) mapMemory(max uint64) experimental.LinearMemory {
	size := roundPage(len(im.data))
	if im.fd < 0 || max == 0 || max > 1<<32 || uint64(size) > max {
		return nil
	}
	buf, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|mapNoReserve)
	if err != nil {
		return nil
	}
	_, err = unix.MmapPtr(im.fd, 0, unsafe.Pointer(&buf[0]), uintptr(size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED)
	if err != nil {
		syscall.Munmap(buf)
		return nil
	}
	return &mmapMemory{buf: buf}
}

// close releases the memory file; instances already mapped keep their
// pages.
func (im *memoryImage) close() {
	if im != nil && im.fd >= 0 {
		syscall.Close(im.fd)
		im.fd = -1
	}
}
