package sdk

import (
	"unsafe"

	"github.com/wingman-app/wingate/sdk/abi"
)

// The SDK's request decoders. They accept exactly the encoding of package
// abi (and are tested against it) and slice every string field out of one
// string instead of allocating one per field. Inside a guest an allocation
// costs far more than natively (about 0.4 µs of a 1.2 µs cache decision)
// and drives the guest's garbage collector, so:
//
//   - cache and route requests are decoded without any allocation: their
//     strings are views of the input buffer, valid only until the handler
//     returns (see CacheRequest). A handler that keeps one must copy it
//     with strings.Clone.
//   - compress requests, whose decisions take milliseconds and whose
//     policies commonly remember messages across turns, are copied once
//     into a single string: an author may keep those strings.

// sreader decodes from a string with a sticky failure flag.
type sreader struct {
	s   string
	bad bool
}

func (r *sreader) u8() uint8 {
	if len(r.s) < 1 {
		r.bad, r.s = true, ""
		return 0
	}
	v := r.s[0]
	r.s = r.s[1:]
	return v
}

func (r *sreader) u32() uint32 {
	if len(r.s) < 4 {
		r.bad, r.s = true, ""
		return 0
	}
	v := uint32(r.s[0]) | uint32(r.s[1])<<8 | uint32(r.s[2])<<16 | uint32(r.s[3])<<24
	r.s = r.s[4:]
	return v
}

func (r *sreader) str() string {
	n := r.u32()
	if r.bad || uint64(n) > uint64(len(r.s)) {
		r.bad, r.s = true, ""
		return ""
	}
	v := r.s[:n]
	r.s = r.s[n:]
	return v
}

func (r *sreader) enum(max uint8) uint8 {
	v := r.u8()
	if v > max {
		r.bad, r.s = true, ""
	}
	return v
}

func (r *sreader) err() error {
	if r.bad {
		return errBadRequest
	}
	if len(r.s) != 0 {
		return abi.ErrTrailing
	}
	return nil
}

var errBadRequest = abi.ErrShort

// view returns a string that shares b's bytes: valid while b is unchanged.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decodeCacheRequest is abi.DecodeCacheRequest without allocation: the
// strings of r are views of b.
func decodeCacheRequest(b []byte, r *CacheRequest) error {
	d := sreader{s: view(b)}
	r.Method = d.str()
	r.Route = d.str()
	r.Path = d.str()
	r.Query = d.str()
	r.User = d.str()
	return d.err()
}

// decodeRouteRequest is abi.DecodeRouteRequest without allocation: the
// message is a view of b.
func decodeRouteRequest(b []byte, r *RouteRequest) error {
	d := sreader{s: view(b)}
	r.Message = d.str()
	r.Purpose = abi.Purpose(d.enum(uint8(abi.PurposeAssessment)))
	r.HistoryTurns = d.u32()
	r.HistoryTokens = d.u32()
	return d.err()
}

// decodeCompressRequest is abi.DecodeCompressRequest with one allocation
// for the strings; r.Messages is reused when large enough.
func decodeCompressRequest(b []byte, r *CompressRequest) error {
	d := sreader{s: string(b)}
	r.BudgetTokens = d.u32()
	r.Query = d.str()
	n := d.u32()
	if n > abi.MaxListLen {
		return abi.ErrTooLong
	}
	if uint64(n)*13 > uint64(len(d.s)) { // id len + role + tokens + text len
		return abi.ErrShort
	}
	if cap(r.Messages) < int(n) {
		r.Messages = make([]Message, 0, n)
	}
	r.Messages = r.Messages[:n]
	for i := range r.Messages {
		m := &r.Messages[i]
		m.ID = d.str()
		m.Role = abi.Role(d.enum(uint8(abi.RoleSystem)))
		m.Tokens = d.u32()
		m.Text = d.str()
	}
	return d.err()
}
