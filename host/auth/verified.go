package auth

import (
	"hash/maphash"
	"sync"
	"time"
)

// verifiedCache remembers tokens that passed Verify, so that a client
// presenting the same token again is answered without parsing, HMAC and
// JSON decoding: one map lookup, no allocation. An entry is only the exact
// token string that verified, its user id and its expiry ("exp", which
// has no leeway); the clock is checked on every hit, so a remembered
// token is never answered at or past its expiry, exactly as a parsed one. The
// Authority's secret never changes, so a signature once valid stays so.
//
// The cache is bounded: verifiedShards shards of at most verifiedPerShard
// entries; a full shard is emptied before the next insert (tokens are
// re-verified, never wrongly accepted).
type verifiedCache struct {
	seed   maphash.Seed
	shards [verifiedShards]verifiedShard
}

const (
	verifiedShards   = 16
	verifiedPerShard = 1024
	// maxCachedToken bounds the length of a remembered token: a client
	// cannot fill memory with huge valid tokens (it cannot mint them
	// anyway without the secret).
	maxCachedToken = 1024
)

type verifiedShard struct {
	mu sync.RWMutex
	m  map[string]verifiedEntry
}

type verifiedEntry struct {
	id    int64
	until time.Time
}

func (c *verifiedCache) shard(token string) *verifiedShard {
	return &c.shards[maphash.String(c.seed, token)%verifiedShards]
}

// lookup returns the user id of a remembered token still valid at now.
func (c *verifiedCache) lookup(token string, now time.Time) (int64, bool) {
	s := c.shard(token)
	s.mu.RLock()
	e, ok := s.m[token]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return 0, false
	}
	return e.id, true
}

// remember stores a token that verified, valid until its expiry; token
// is copied (the caller's string may be a view of a reused request
// buffer).
func (c *verifiedCache) remember(token string, id int64, until time.Time) {
	if len(token) > maxCachedToken {
		return
	}
	s := c.shard(token)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= verifiedPerShard {
		s.m = make(map[string]verifiedEntry, verifiedPerShard)
	}
	s.m[string([]byte(token))] = verifiedEntry{id: id, until: until}
	s.mu.Unlock()
}
