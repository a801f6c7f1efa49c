package cache

import (
	"strconv"
	"strings"
)

// Redis Cluster runs a script or a multi-key command only when all its
// keys hash to one slot. The cache keeps each entry and its tag-set
// memberships on one slot by giving both the same hash tag, the "{...}"
// part of a key that alone decides its slot: the tag of the entry's shard.
// An entry's shard is a hash of its key modulo the number of shards; a tag
// has one set per shard, so storing an entry touches one slot and a purge
// visits every shard. The shard tags are chosen so their slots spread
// evenly over the 16384 slots, and so over a cluster's primaries.
//
// Redis key of an entry: <prefix>:<version>:k:{<shard tag>}<rest of its key>
// Redis key of a tag set: <prefix>:<version>:t:{<shard tag>}<tag>

// clusterSlots is the number of hash slots of Redis Cluster.
const clusterSlots = 16384

// DefaultClusterShards is the number of shards on a cluster when
// Config.RedisShards is zero; a single server or Sentinel primary uses one.
const DefaultClusterShards = 64

// MaxRedisShards bounds Config.RedisShards, which must be a power of two:
// a purge runs one script per shard.
const MaxRedisShards = 1024

// MaxShardTagBytes bounds the length of a shard's hash tag (TestShardTags
// checks every allowed number of shards).
const MaxShardTagBytes = 5

// shardTags returns n hash tags whose slots fall in n equal ranges of the
// slot space, in order: tag i hashes into [i*16384/n, (i+1)*16384/n).
func shardTags(n int) []string {
	tags := make([]string, n)
	for i := range n {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
		for j := 0; ; j++ {
			s := strconv.Itoa(j)
			if slot := int(keySlot(s)); slot >= lo && slot < hi {
				tags[i] = s
				break
			}
		}
	}
	return tags
}

// keySlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag
// (the text between the first "{" and the next "}", when not empty) or of
// the whole key, modulo 16384.
func keySlot(key string) uint16 {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					return crc16(key) % clusterSlots
				}
			}
			break
		}
	}
	return crc16(key) % clusterSlots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the
// checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// shardOf returns the shard of an entry key: FNV-1a of the key modulo the
// number of shards, the same in every instance.
func (c *Cache) shardOf(key string) int {
	if len(c.shards) == 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(len(c.shards)))
}

// redisKey is the Redis key of the entry with (in-process) key key.
func (c *Cache) redisKey(key string) string {
	s := c.shards[c.shardOf(key)]
	return c.keyPrefix + "{" + s + "}" + strings.TrimPrefix(key, c.keyPrefix)
}

// tagKey is the Redis set listing the keys of shard shard stored under tag.
func (c *Cache) tagKey(shard int, tag string) string {
	return c.tagPrefix + "{" + c.shards[shard] + "}" + tag
}
