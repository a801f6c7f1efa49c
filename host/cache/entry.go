package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"
)

// Entry is one stored response. Entries are immutable once stored: the
// cache hands the same Body to every reader.
type Entry struct {
	// Status is the HTTP status of the response; only 200 is stored.
	Status int
	// ContentType is the response's Content-Type header.
	ContentType string
	// Body is the response body.
	Body []byte
	// ETag is the entry's strong entity tag (RFC 9110 8.8.3), quotes
	// included: computed once, when the origin's response is stored
	// (ETagOf), and kept with the entry in both tiers, so every instance
	// serves the same tag for the same bytes.
	ETag string
	// Created is when the origin call that produced the entry began.
	Created time.Time
	// TTL is how long the entry is fresh; Stale how long past TTL a stale
	// copy may still be served while it is refreshed.
	TTL, Stale time.Duration
	// Tags name the purges that drop the entry.
	Tags []string
}

// Age is how old the entry is at now.
func (e *Entry) Age(now time.Time) time.Duration {
	a := now.Sub(e.Created)
	if a < 0 {
		return 0
	}
	return a
}

// Fresh reports whether the entry is within its TTL at now.
func (e *Entry) Fresh(now time.Time) bool { return e.Age(now) < e.TTL }

// Usable reports whether the entry may still be served at now, fresh or
// stale.
func (e *Entry) Usable(now time.Time) bool { return e.Age(now) < e.TTL+e.Stale }

// remaining is how long the entry may still be kept at now.
func (e *Entry) remaining(now time.Time) time.Duration {
	return e.TTL + e.Stale - e.Age(now)
}

// ETagOf is the strong entity tag of a response: the first 128 bits of
// the SHA-256 of its content type and body, in hex between quotes. Equal
// bytes give equal tags on every instance.
func ETagOf(contentType string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(contentType))
	h.Write([]byte{0})
	h.Write(body)
	var sum [sha256.Size]byte
	b := make([]byte, 0, 2+32)
	b = append(b, '"')
	b = hex.AppendEncode(b, h.Sum(sum[:0])[:16])
	return string(append(b, '"'))
}

// validETag reports whether t is a strong entity tag that may be sent in
// a header: a quoted run of at most maxETag visible characters other than
// the quote.
func validETag(t string) bool {
	if len(t) < 2 || len(t) > maxETag || t[0] != '"' || t[len(t)-1] != '"' {
		return false
	}
	for i := 1; i < len(t)-1; i++ {
		if c := t[i]; c < 0x21 || c == '"' || c > 0x7e {
			return false
		}
	}
	return true
}

// Wire format of an entry stored in Redis (format version 2):
//
//	magic 'W', version 2, status u16, created unix ms i64, ttl ms u32,
//	stale ms u32, content type (u16 length + bytes), entity tag (u8
//	length + bytes, empty or a valid strong tag), tag count u16, tags
//	(u16 length + bytes each), body (the rest).
//
// All integers are little-endian. Version 2 added the entity tag.
const (
	entryMagic   = 'W'
	entryVersion = 2
	maxTags      = 256
	maxETag      = 128
)

var (
	errEntryShort   = errors.New("cache: stored entry truncated")
	errEntryVersion = errors.New("cache: stored entry has an unknown format")
	errEntryField   = errors.New("cache: stored entry has an invalid field")
)

// encodeEntry returns the wire form of e.
func encodeEntry(e *Entry) []byte {
	etag := e.ETag
	if !validETag(etag) {
		etag = ""
	}
	n := 2 + 2 + 8 + 4 + 4 + 2 + len(e.ContentType) + 1 + len(etag) + 2 + len(e.Body)
	for _, t := range e.Tags {
		n += 2 + len(t)
	}
	b := make([]byte, 0, n)
	b = append(b, entryMagic, entryVersion)
	b = binary.LittleEndian.AppendUint16(b, uint16(e.Status))
	b = binary.LittleEndian.AppendUint64(b, uint64(e.Created.UnixMilli()))
	b = binary.LittleEndian.AppendUint32(b, durMS(e.TTL))
	b = binary.LittleEndian.AppendUint32(b, durMS(e.Stale))
	b = appendStr16(b, e.ContentType)
	b = append(b, byte(len(etag)))
	b = append(b, etag...)
	tags := e.Tags
	if len(tags) > maxTags {
		tags = tags[:maxTags]
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(tags)))
	for _, t := range tags {
		b = appendStr16(b, t)
	}
	return append(b, e.Body...)
}

func durMS(d time.Duration) uint32 {
	ms := d.Milliseconds()
	switch {
	case ms < 0:
		return 0
	case ms > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(ms)
}

func appendStr16(b []byte, s string) []byte {
	if len(s) > 1<<16-1 {
		s = s[:1<<16-1]
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decodeEntry parses the wire form. The returned entry's Body aliases b.
func decodeEntry(b []byte) (*Entry, error) {
	if len(b) < 2 {
		return nil, errEntryShort
	}
	if b[0] != entryMagic || b[1] != entryVersion {
		return nil, errEntryVersion
	}
	b = b[2:]
	if len(b) < 2+8+4+4 {
		return nil, errEntryShort
	}
	e := &Entry{Status: int(binary.LittleEndian.Uint16(b))}
	created := int64(binary.LittleEndian.Uint64(b[2:]))
	e.TTL = time.Duration(binary.LittleEndian.Uint32(b[10:])) * time.Millisecond
	e.Stale = time.Duration(binary.LittleEndian.Uint32(b[14:])) * time.Millisecond
	b = b[18:]
	if e.Status < 100 || e.Status > 999 || created < 0 {
		return nil, errEntryField
	}
	e.Created = time.UnixMilli(created)
	var ok bool
	if e.ContentType, b, ok = str16(b); !ok {
		return nil, errEntryShort
	}
	if len(b) < 1 || len(b)-1 < int(b[0]) {
		return nil, errEntryShort
	}
	if n := int(b[0]); n > 0 {
		e.ETag = string(b[1 : 1+n])
		if !validETag(e.ETag) {
			return nil, errEntryField
		}
	}
	b = b[1+int(b[0]):]
	if len(b) < 2 {
		return nil, errEntryShort
	}
	n := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	if n > maxTags || n*2 > len(b) {
		return nil, errEntryField
	}
	if n > 0 {
		e.Tags = make([]string, n)
		for i := range e.Tags {
			if e.Tags[i], b, ok = str16(b); !ok {
				return nil, errEntryShort
			}
		}
	}
	e.Body = b
	return e, nil
}

func str16(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.LittleEndian.Uint16(b))
	if len(b)-2 < n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}
