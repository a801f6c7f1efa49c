//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/wingman-app/wingate/sdk/abi"
)

// The module's single dispatcher and input buffer. The host writes the
// input of the next call into in (see wingate_buffer); results live in
// the dispatcher's output buffer until the next call.
var (
	module dispatcher
	in     []byte
)

//go:wasmimport wingate log
func hostLog(level int32, ptr unsafe.Pointer, size int32)

func logMessage(level int32, msg string) {
	if len(msg) == 0 {
		return
	}
	hostLog(level, unsafe.Pointer(unsafe.StringData(msg)), int32(len(msg)))
}

//go:wasmexport wingate_abi_v1
func exportABIVersion() int32 { return abi.MinorVersion }

//go:wasmexport wingate_kinds
func exportKinds() int32 { return int32(kinds()) }

//go:wasmexport wingate_buffer
func exportBuffer(size int32) int32 {
	if size < 0 {
		return 0
	}
	if cap(in) < int(size) || cap(in) == 0 {
		n := int(size)
		if n < 1024 {
			n = 1024
		}
		in = make([]byte, n)
	}
	in = in[:cap(in)]
	return int32(uintptr(unsafe.Pointer(&in[0])))
}

// input returns the first size bytes of the input buffer, or nil when
// size does not fit it.
func input(size int32) ([]byte, bool) {
	if size < 0 || int(size) > len(in) {
		return nil, false
	}
	return in[:size], true
}

func packed(out []byte) int64 {
	return int64(abi.PackResult(uint32(uintptr(unsafe.Pointer(unsafe.SliceData(out)))), uint32(len(out))))
}

//go:wasmexport wingate_init
func exportInit(size int32) int64 {
	b, ok := input(size)
	if !ok {
		return packed(module.fail(errInputSize))
	}
	return packed(module.initialize(b))
}

//go:wasmexport wingate_decide
func exportDecide(kind int32, size int32) int64 {
	b, ok := input(size)
	if !ok {
		return packed(module.fail(errInputSize))
	}
	return packed(module.decide(abi.Kind(kind), b))
}
