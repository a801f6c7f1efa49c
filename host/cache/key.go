package cache

import (
	"strconv"
	"strings"
	"unsafe"
)

// FormatVersion is the version of the key layout and the stored entry
// format. It is part of every key, so a host with a new format never reads
// entries written by an old one.
const FormatVersion = "v1"

// Key returns the full cache key for a policy key. A user-scoped key
// (user != "") always contains the user, length-prefixed so that no user id
// and policy key can combine into another user's key; a global key
// (user == "") shares one namespace for everyone.
func (c *Cache) Key(user, policyKey string) string {
	b := c.AppendKey(make([]byte, 0, len(c.keyPrefix)+len(user)+len(policyKey)+24), user, policyKey)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is never written again
}

// AppendKey appends Key(user, policyKey) to b.
func (c *Cache) AppendKey(b []byte, user, policyKey string) []byte {
	b = append(b, c.keyPrefix...)
	if user == "" {
		b = append(b, "g:"...)
	} else {
		b = append(b, "u:"...)
		b = strconv.AppendInt(b, int64(len(user)), 10)
		b = append(b, ':')
		b = append(b, user...)
		b = append(b, ':')
	}
	return append(b, policyKey...)
}

// tagKey is the Redis set listing the keys stored under a tag.
func (c *Cache) tagKey(tag string) string { return c.tagPrefix + tag }

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
