package abi

import (
	"errors"
	"math"
	"unsafe"
)

// Encoding rules (ABI v1): integers are little-endian u32 unless noted; a
// string is a u32 byte length followed by its UTF-8 bytes; a list is a u32
// count followed by its items; enums are one byte; Score is an IEEE-754
// float64 (8 bytes, little-endian). Fields appear in struct order.

// Limits the decoders enforce, so that bytes from the other side of the
// boundary can never make a decoder allocate without bound.
const (
	// MaxListLen bounds the number of items of any list.
	MaxListLen = 1 << 16
	// MaxPayload bounds any encoded request or decision.
	MaxPayload = 16 << 20
)

// ErrShort is returned when the input ends before a field does.
var ErrShort = errors.New("abi: input too short")

// ErrTrailing is returned when bytes remain after the last field.
var ErrTrailing = errors.New("abi: trailing bytes after the last field")

// ErrEnum is returned when an enum byte is out of range.
var ErrEnum = errors.New("abi: enum value out of range")

// ErrTooLong is returned when a length or count exceeds the limits.
var ErrTooLong = errors.New("abi: length or count over the limit")

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func appendStr(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

// reader decodes with a sticky error: after the first error every read
// returns a zero value and the error is reported once by done.
type reader struct {
	b   []byte
	err error
	// views makes str return strings that share b's memory.
	views bool
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.fail(ErrShort)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.fail(ErrShort)
		return 0
	}
	v := uint32(r.b[0]) | uint32(r.b[1])<<8 | uint32(r.b[2])<<16 | uint32(r.b[3])<<24
	r.b = r.b[4:]
	return v
}

func (r *reader) f64() float64 {
	if len(r.b) < 8 {
		r.fail(ErrShort)
		return 0
	}
	lo := uint64(r.u32())
	hi := uint64(r.u32())
	return math.Float64frombits(lo | hi<<32)
}

func (r *reader) str() string {
	n := r.u32()
	if r.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(r.b)) {
		r.fail(ErrShort)
		return ""
	}
	var s string
	if r.views && n > 0 {
		s = unsafe.String(&r.b[0], n)
	} else {
		s = string(r.b[:n])
	}
	r.b = r.b[n:]
	return s
}

// count reads a list length and checks that at least min bytes per item
// remain, so a forged count cannot force a large allocation.
func (r *reader) count(min int) int {
	n := r.u32()
	if r.err != nil {
		return 0
	}
	if n > MaxListLen {
		r.fail(ErrTooLong)
		return 0
	}
	if uint64(n)*uint64(min) > uint64(len(r.b)) {
		r.fail(ErrShort)
		return 0
	}
	return int(n)
}

func (r *reader) enum(max uint8) uint8 {
	v := r.u8()
	if r.err == nil && v > max {
		r.fail(ErrEnum)
	}
	return v
}

func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return ErrTrailing
	}
	return nil
}

func appendF64(b []byte, f float64) []byte {
	u := math.Float64bits(f)
	b = appendU32(b, uint32(u))
	return appendU32(b, uint32(u>>32))
}

// AppendCacheRequest appends the encoding of r to b.
func AppendCacheRequest(b []byte, r *CacheRequest) []byte {
	b = appendStr(b, r.Method)
	b = appendStr(b, r.Route)
	b = appendStr(b, r.Path)
	b = appendStr(b, r.Query)
	return appendStr(b, r.User)
}

// DecodeCacheRequest decodes b into r.
func DecodeCacheRequest(b []byte, r *CacheRequest) error {
	d := reader{b: b}
	r.Method = d.str()
	r.Route = d.str()
	r.Path = d.str()
	r.Query = d.str()
	r.User = d.str()
	return d.done()
}

// AppendCacheDecision appends the encoding of c to b.
func AppendCacheDecision(b []byte, c *CacheDecision) []byte {
	b = append(b, byte(c.Action))
	b = appendStr(b, c.Key)
	b = appendU32(b, c.TTLSeconds)
	b = append(b, byte(c.Scope))
	b = appendU32(b, c.StaleSeconds)
	b = appendU32(b, uint32(len(c.Tags)))
	for _, t := range c.Tags {
		b = appendStr(b, t)
	}
	return b
}

// DecodeCacheDecision decodes b into c. c.Tags is reused when its
// capacity allows.
func DecodeCacheDecision(b []byte, c *CacheDecision) error {
	return decodeCacheDecision(reader{b: b}, c)
}

// DecodeCacheDecisionView is DecodeCacheDecision without copying: the
// strings of c share b's memory and are valid while b is unchanged.
func DecodeCacheDecisionView(b []byte, c *CacheDecision) error {
	return decodeCacheDecision(reader{b: b, views: true}, c)
}

func decodeCacheDecision(d reader, c *CacheDecision) error {
	c.Action = CacheAction(d.enum(uint8(CacheLookup)))
	c.Key = d.str()
	c.TTLSeconds = d.u32()
	c.Scope = Scope(d.enum(uint8(ScopeUser)))
	c.StaleSeconds = d.u32()
	n := d.count(4)
	c.Tags = c.Tags[:0]
	if n > 0 {
		if cap(c.Tags) < n {
			c.Tags = make([]string, 0, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			c.Tags = append(c.Tags, d.str())
		}
	}
	return d.done()
}

// AppendRouteRequest appends the encoding of r to b.
func AppendRouteRequest(b []byte, r *RouteRequest) []byte {
	b = appendStr(b, r.Message)
	b = append(b, byte(r.Purpose))
	b = appendU32(b, r.HistoryTurns)
	return appendU32(b, r.HistoryTokens)
}

// DecodeRouteRequest decodes b into r.
func DecodeRouteRequest(b []byte, r *RouteRequest) error {
	d := reader{b: b}
	r.Message = d.str()
	r.Purpose = Purpose(d.enum(uint8(PurposeAssessment)))
	r.HistoryTurns = d.u32()
	r.HistoryTokens = d.u32()
	return d.done()
}

// AppendRouteDecision appends the encoding of c to b.
func AppendRouteDecision(b []byte, c *RouteDecision) []byte {
	b = append(b, byte(c.Tier))
	b = appendF64(b, c.Score)
	return appendStr(b, c.Reason)
}

// DecodeRouteDecision decodes b into c. A score that is not a number or
// lies outside [0, 1] is an error.
func DecodeRouteDecision(b []byte, c *RouteDecision) error {
	d := reader{b: b}
	c.Tier = Tier(d.enum(uint8(TierPremium)))
	c.Score = d.f64()
	c.Reason = d.str()
	if d.err == nil && !(c.Score >= 0 && c.Score <= 1) {
		return ErrScore
	}
	return d.done()
}

// ErrScore is returned when a route decision's score is outside [0, 1].
var ErrScore = errors.New("abi: score outside [0, 1]")

// AppendCompressRequest appends the encoding of r to b.
func AppendCompressRequest(b []byte, r *CompressRequest) []byte {
	b = appendU32(b, r.BudgetTokens)
	b = appendStr(b, r.Query)
	b = appendU32(b, uint32(len(r.Messages)))
	for i := range r.Messages {
		m := &r.Messages[i]
		b = appendStr(b, m.ID)
		b = append(b, byte(m.Role))
		b = appendU32(b, m.Tokens)
		b = appendStr(b, m.Text)
	}
	return b
}

// DecodeCompressRequest decodes b into r.
func DecodeCompressRequest(b []byte, r *CompressRequest) error {
	d := reader{b: b}
	r.BudgetTokens = d.u32()
	r.Query = d.str()
	n := d.count(13) // id len + role + tokens + text len
	r.Messages = r.Messages[:0]
	if n > 0 && cap(r.Messages) < n {
		r.Messages = make([]Message, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		var m Message
		m.ID = d.str()
		m.Role = Role(d.enum(uint8(RoleSystem)))
		m.Tokens = d.u32()
		m.Text = d.str()
		r.Messages = append(r.Messages, m)
	}
	return d.done()
}

// AppendCompressDecision appends the encoding of c to b.
func AppendCompressDecision(b []byte, c *CompressDecision) []byte {
	b = appendU32(b, uint32(len(c.Keep)))
	for _, k := range c.Keep {
		b = appendU32(b, k)
	}
	b = appendStr(b, c.Summary)
	return appendU32(b, c.Tokens)
}

// DecodeCompressDecision decodes b into c. It checks only the encoding;
// the host checks Keep against the request it sent.
func DecodeCompressDecision(b []byte, c *CompressDecision) error {
	d := reader{b: b}
	n := d.count(4)
	c.Keep = c.Keep[:0]
	if n > 0 && cap(c.Keep) < n {
		c.Keep = make([]uint32, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		c.Keep = append(c.Keep, d.u32())
	}
	c.Summary = d.str()
	c.Tokens = d.u32()
	return d.done()
}
