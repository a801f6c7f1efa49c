package cache

import (
	"strings"
	"testing"
)

// TestKeySlot checks keySlot against values Redis documents (CLUSTER
// KEYSLOT) and the hash-tag rules; TestDeploymentCluster checks it against
// a live cluster for every key the cache writes.
func TestKeySlot(t *testing.T) {
	tests := []struct {
		key  string
		slot uint16
	}{
		{"123456789", 0x31C3 % clusterSlots}, // the CRC-16/XMODEM check value
		{"somekey", 11058},
		{"foo", 12182},
		{"{user1000}.following", keySlot("user1000")},
		{"{user1000}.followers", keySlot("user1000")},
		{"foo{}{bar}", keySlot("foo{}{bar}")}, // empty tag: whole key
		{"foo{{bar}}zap", keySlot("{bar")},
		{"foo{bar}{zap}", keySlot("bar")},
		{"{", keySlot("{")},
	}
	for _, tt := range tests {
		if got := keySlot(tt.key); got != tt.slot {
			t.Fatalf("keySlot(%q) = %d, want %d", tt.key, got, tt.slot)
		}
	}
	if keySlot("foo{}{bar}") == keySlot("bar") {
		t.Fatal("an empty hash tag must not let a later one count")
	}
}

// TestShardTags: for every allowed number of shards, n shard tags hash into n equal, ordered slot ranges, so a
// cluster's primaries (each serving a contiguous range) get equal shares.
func TestShardTags(t *testing.T) {
	for n := 1; n <= MaxRedisShards; n *= 2 {
		tags := shardTags(n)
		seen := map[string]bool{}
		for i, tg := range tags {
			s := int(keySlot(tg))
			if s < i*clusterSlots/n || s >= (i+1)*clusterSlots/n || seen[tg] || len(tg) > MaxShardTagBytes || strings.ContainsAny(tg, "{}") {
				t.Fatalf("n=%d: tag %d %q on slot %d", n, i, tg, s)
			}
			seen[tg] = true
		}
	}
}

// TestRedisShardsLimits: the shard count and the prefix are checked.
func TestRedisShardsLimits(t *testing.T) {
	for _, cfg := range []Config{{RedisShards: -1}, {RedisShards: 3}, {RedisShards: MaxRedisShards * 2}, {RedisShards: MaxRedisShards + 1}, {Prefix: "a{b}"}, {Prefix: "a}"}} {
		if c, err := New(cfg); err == nil {
			c.Close()
			t.Fatalf("%+v accepted", cfg)
		}
	}
	c := newTestCache(t, Config{RedisShards: MaxRedisShards})
	if len(c.shards) != MaxRedisShards {
		t.Fatal("shards not made")
	}
	// An entry's shard is the same in every instance.
	d := newTestCache(t, Config{Prefix: c.cfg.Prefix, RedisShards: MaxRedisShards})
	seen := map[int]bool{}
	for i := range 5000 {
		k := c.Key("u", string(rune('a'+i%26))+string(rune(i)))
		if c.redisKey(k) != d.redisKey(k) {
			t.Fatal("instances disagree on a key's shard")
		}
		seen[c.shardOf(k)] = true
	}
	// Braces in a caller's id or a request cannot move an entry off its
	// shard's slot: the shard's hash tag comes first.
	for _, k := range []string{c.Key("{evil}", "{x}"), c.Key("", "}{y}"), c.Key("{", "}")} {
		rk := c.redisKey(k)
		if keySlot(rk) != keySlot(c.shards[c.shardOf(k)]) || keySlot(c.tagKey(c.shardOf(k), "{t}")) != keySlot(rk) {
			t.Fatalf("%q is not on its shard's slot", rk)
		}
	}
	// The longest Redis key stays within the documented bound.
	for _, u := range []string{"", strings.Repeat("9", MaxKeyUserBytes), strings.Repeat("9", MaxKeyUserBytes+1)} {
		for _, body := range []int{0, MaxKeyBodyBytes - 20, MaxKeyBodyBytes, 4 * MaxKeyBodyBytes} {
			k := string(c.AppendRequestKey(nil, RequestKey{User: u, Route: "/r", Path: strings.Repeat("p", body)}))
			for _, cc := range []*Cache{c, newTestCache(t, Config{Prefix: c.cfg.Prefix})} {
				if rk := cc.redisKey(k); len(rk) > len(c.cfg.Prefix)+MaxKeyBytes {
					t.Fatalf("a Redis key of %d bytes past the prefix, bound %d", len(rk)-len(c.cfg.Prefix), MaxKeyBytes)
				}
			}
		}
	}
	if len(seen) < MaxRedisShards*9/10 {
		t.Fatalf("5000 keys on %d of %d shards", len(seen), MaxRedisShards)
	}
}
