package sdk

import "github.com/wingman-app/wingate/sdk/abi"

// The SDK's request decoders. They accept exactly the encoding of package
// abi (and are tested against it) but copy the payload once into a single
// string and slice every string field out of it: one allocation per
// request instead of one per string. Inside a guest each allocation costs
// far more than natively and drives the guest's garbage collector, so
// this is most of the cost of a decision. The strings are ordinary
// immutable strings; an author may keep them.

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

// decodeCacheRequest is abi.DecodeCacheRequest with one allocation.
func decodeCacheRequest(b []byte, r *CacheRequest) error {
	d := sreader{s: string(b)}
	r.Method = d.str()
	r.Route = d.str()
	r.Path = d.str()
	r.Query = d.str()
	r.User = d.str()
	return d.err()
}

// decodeRouteRequest is abi.DecodeRouteRequest with one allocation.
func decodeRouteRequest(b []byte, r *RouteRequest) error {
	d := sreader{s: string(b)}
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
