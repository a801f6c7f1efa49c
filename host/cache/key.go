package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strconv"
	"strings"
	"unsafe"
)

// FormatVersion is the version of the key layout and the stored entry
// format. It is part of every key, so a host with a new format never reads
// entries written by an old one. v2: keys carry the host's canonical
// request (RequestKey) and are bounded in length. v3: entries carry their
// entity tag (Entry.ETag) and a key tag (KeyTag). v4: Redis keys carry the
// hash tag of their shard, so a Redis Cluster can hold them (shard.go).
const FormatVersion = "v4"

// MaxKeyBodyBytes bounds the part of a key after its prefix and scope: a
// longer body (a long canonical request or policy key) is replaced by its
// SHA-256, so no decision can make the host write a key longer than
// MaxKeyBytes past the configured prefix.
const MaxKeyBodyBytes = 512

// MaxKeyBytes is the longest key the cache writes to either tier, not
// counting Config.Prefix: the scope ("u:" and a length-prefixed user of at
// most MaxKeyUserBytes), a body of at most MaxKeyBodyBytes and, in Redis,
// the shard's hash tag (at most MaxShardTagBytes in braces).
const MaxKeyBytes = len(":"+FormatVersion+":k:") + len("{}") + MaxShardTagBytes + len("u:") + 3 + 1 + MaxKeyUserBytes + 1 + MaxKeyBodyBytes

// MaxKeyUserBytes bounds the user part of a key; a longer user id is
// hashed like an oversized body.
const MaxKeyUserBytes = 64

// Key returns the full cache key for a policy key. A user-scoped key
// (user != "") always contains the user, length-prefixed so that no user id
// and policy key can combine into another user's key; a global key
// (user == "") shares one namespace for everyone.
func (c *Cache) Key(user, policyKey string) string {
	b := c.AppendKey(make([]byte, 0, len(c.keyPrefix)+len(user)+len(policyKey)+24), user, policyKey)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is never written again
}

// AppendKey appends Key(user, policyKey) to b: AppendRequestKey with an
// empty request.
func (c *Cache) AppendKey(b []byte, user, policyKey string) []byte {
	return c.AppendRequestKey(b, RequestKey{User: user, PolicyKey: policyKey})
}

// RequestKey is what a cache key is made of. The host fills Route, Path
// and Query from the request it canonicalised and User from the caller it
// authenticated; PolicyKey is the cache policy's key, which can only split
// entries further, never merge two requests the host tells apart.
type RequestKey struct {
	User      string // the caller's id; empty: shared by every caller
	Route     string // the route template
	Path      string // the canonical path
	Query     string // the canonical query
	PolicyKey string
}

// AppendRequestKey appends the full cache key of k to b. Every field is
// length-prefixed, so distinct RequestKeys give distinct keys; the user
// is always in clear unless longer than MaxKeyUserBytes, and a body
// (route, path, query, policy key) longer than MaxKeyBodyBytes is written
// as "#" and its SHA-256 in hex instead of "=" and the body itself. The
// result is at most len(Config.Prefix)+MaxKeyBytes bytes. It allocates
// nothing when b has room.
func (c *Cache) AppendRequestKey(b []byte, k RequestKey) []byte {
	b = append(b, c.keyPrefix...)
	if k.User == "" {
		b = append(b, "g:"...)
	} else if len(k.User) > MaxKeyUserBytes {
		b = append(b, "U:"...)
		b = appendHash(b, k.User)
		b = append(b, ':')
	} else {
		b = append(b, "u:"...)
		b = strconv.AppendInt(b, int64(len(k.User)), 10)
		b = append(b, ':')
		b = append(b, k.User...)
		b = append(b, ':')
	}
	fields := [...]string{k.Route, k.Path, k.Query}
	n := 1 + len(k.PolicyKey)
	for _, f := range fields {
		n += decimalLen(len(f)) + 1 + len(f)
	}
	if n <= MaxKeyBodyBytes {
		b = append(b, '=')
		for _, f := range fields {
			b = strconv.AppendInt(b, int64(len(f)), 10)
			b = append(b, ':')
			b = append(b, f...)
		}
		return append(b, k.PolicyKey...)
	}
	// The same bytes as the literal body after its "=", hashed without
	// copying them (a policy key may be megabytes long).
	h := sha256.New()
	var num [20]byte
	for _, f := range fields {
		h.Write(strconv.AppendInt(num[:0], int64(len(f)), 10))
		h.Write([]byte{':'})
		io.WriteString(h, f)
	}
	io.WriteString(h, k.PolicyKey)
	var sum [sha256.Size]byte
	b = append(b, '#')
	return hex.AppendEncode(b, h.Sum(sum[:0]))
}

// decimalLen is the number of decimal digits of n ≥ 0.
func decimalLen(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// appendHash appends the SHA-256 of s in hex.
func appendHash(b []byte, s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return hex.AppendEncode(b, sum[:])
}

// KeyTag is the purge tag every entry stored for a canonical request
// (its canonical path, then "?" and its canonical query when not empty)
// carries, whoever the caller and whatever the policy's key: purging it
// drops every entry of that request. It is "key:" and the SHA-256 of the
// request in hex, so it is a valid tag whatever the request holds.
func KeyTag(canonicalRequest string) string {
	sum := sha256.Sum256([]byte(canonicalRequest))
	return "key:" + hex.EncodeToString(sum[:])
}

// ValidTag reports whether t can be a purge tag: not empty, at most 512
// bytes, no line breaks. Entries with an invalid tag are not cacheable,
// since they could never be purged by it.
func ValidTag(t string) bool { return validTag(t) }

// validTag reports whether a tag can travel in a purge message.
func validTag(t string) bool {
	return t != "" && len(t) <= 512 && !strings.ContainsAny(t, "\n\r")
}

// Purge messages on the pub/sub channel are lines: the format version, the
// sending instance's id, then one tag per line.
const purgeMsgVersion = "1"

func encodePurge(instance string, tags []string) string {
	var b strings.Builder
	b.WriteString(purgeMsgVersion)
	b.WriteByte('\n')
	b.WriteString(instance)
	for _, t := range tags {
		b.WriteByte('\n')
		b.WriteString(t)
	}
	return b.String()
}

// decodePurge parses a purge message; ok is false for anything malformed.
func decodePurge(msg string) (instance string, tags []string, ok bool) {
	ver, rest, found := strings.Cut(msg, "\n")
	if !found || ver != purgeMsgVersion {
		return "", nil, false
	}
	instance, rest, found = strings.Cut(rest, "\n")
	if instance == "" || !found {
		return "", nil, false
	}
	for _, t := range strings.Split(rest, "\n") {
		if !validTag(t) {
			return "", nil, false
		}
		tags = append(tags, t)
		if len(tags) > maxTags {
			return "", nil, false
		}
	}
	return instance, tags, true
}
