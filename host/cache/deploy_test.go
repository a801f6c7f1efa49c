package cache

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// The same suite runs on a single server, a Redis Cluster and a Sentinel
// primary, each reached through its URL as the application would.

func TestRedisServerVersion(t *testing.T) {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		t.Fatalf("redis-server --version: %v", err)
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli: %v", err)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

func TestDeploymentSingle(t *testing.T) {
	rs := testkit.StartRedis(t)
	runDeploymentSuite(t, rs.URL(), RedisSingle)
}

func TestDeploymentCluster(t *testing.T) {
	c := sharedCluster(t)
	t.Logf("six-node cluster started in %v", c.StartTime)
	runDeploymentSuite(t, c.URL(), RedisCluster)
}

func TestDeploymentClusterClassicPubSub(t *testing.T) {
	c := sharedCluster(t)
	prefix := testPrefix(t)
	a := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, c.URL()), ClassicPubSub: true})
	b := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, c.URL()), ClassicPubSub: true})
	// PUBLISH on a cluster counts only the subscribers of the node that
	// took it; the notice still reaches b.
	checkPurgeNotice(t, a, b, false)
	if a.psMode.Load() != psClassic {
		t.Fatal("ClassicPubSub ignored")
	}
}

func TestDeploymentSentinel(t *testing.T) {
	s := testkit.StartRedisSentinel(t)
	runDeploymentSuite(t, s.URL(), RedisSentinel)
}

func runDeploymentSuite(t *testing.T, url string, mode RedisMode) {
	ctx := context.Background()
	cl, got, err := OpenRedis(url, 0)
	if err != nil || got != mode {
		t.Fatalf("OpenRedis(%s) = %v, %v; want %v", url, got, err, mode)
	}
	cl.Close()
	raw := openClient(t, url)

	t.Run("tag purge across slots", func(t *testing.T) {
		prefix := testPrefix(t)
		a := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, url)})
		b := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, url)})
		// Started caches have loaded their scripts on every primary.
		exists := func(ctx context.Context, c redis.Cmdable) error {
			v, err := c.ScriptExists(ctx, storeScript.Hash(), purgeScript.Hash()).Result()
			if err == nil && (len(v) != 2 || !v[0] || !v[1]) {
				t.Errorf("scripts loaded: %v", v)
			}
			return err
		}
		if cc, ok := raw.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return exists(ctx, n) })
		} else {
			err = exists(ctx, raw)
		}
		if err != nil {
			t.Fatal(err)
		}
		const n = 400
		o := &origin{}
		for i := range n {
			r := req(a, fmt.Sprint(i%7), fmt.Sprintf("key-%d", i), o, time.Hour, 0, "all", fmt.Sprintf("g:%d", i%10))
			if _, err := a.Get(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		// Every entry and its tag sets land in Redis.
		entries := prefix + ":" + FormatVersion + ":k:*"
		waitFor(t, func() bool { return len(scanKeys(t, raw, entries)) == n })
		keys := scanKeys(t, raw, entries)
		slots, nodes := map[uint16]bool{}, map[string]bool{}
		for _, k := range keys {
			slots[keySlot(k)] = true
		}
		if mode == RedisCluster {
			cc := raw.(*redis.ClusterClient)
			for _, k := range keys {
				node, err := cc.MasterForKey(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				nodes[node.Options().Addr] = true
				if want, err := cc.ClusterKeySlot(ctx, k).Result(); err != nil || int64(keySlot(k)) != want {
					t.Fatalf("slot of %q: ours %d, server's %d (%v)", k, keySlot(k), want, err)
				}
			}
			if len(slots) < DefaultClusterShards*3/4 || len(nodes) != 3 {
				t.Fatalf("%d entries on %d slots and %d primaries; want them spread over most of %d shards and all 3 primaries",
					n, len(slots), len(nodes), DefaultClusterShards)
			}
		}
		t.Logf("%s: %d entries on %d slots, %d primaries", mode, n, len(slots), len(nodes))
		// The other instance reads them all from Redis.
		ob := &origin{}
		for i := range n {
			res, err := b.Get(ctx, req(b, fmt.Sprint(i%7), fmt.Sprintf("key-%d", i), ob, time.Hour, 0, "all", fmt.Sprintf("g:%d", i%10)))
			if err != nil || res.Tier != TierRedis {
				t.Fatalf("entry %d from %v (%v), want redis", i, res.Tier, err)
			}
		}
		start := time.Now()
		r1 := a.PurgeReport(ctx, "g:3")
		d1 := time.Since(start)
		if !r1.Redis || r1.RedisEntries != n/10 {
			t.Fatalf("purge g:3: %+v, want %d entries dropped in Redis", r1, n/10)
		}
		if left := len(scanKeys(t, raw, entries)); left != n-n/10 {
			t.Fatalf("%d entries left after purging g:3, want %d", left, n-n/10)
		}
		r2 := a.PurgeReport(ctx, "all")
		if !r2.Redis || r2.RedisEntries != n-n/10 {
			t.Fatalf("purge all: %+v, want %d entries dropped", r2, n-n/10)
		}
		// Entries gone; of the tag sets only the nine g:N other than g:3
		// remain, holding members that no longer exist.
		if left := scanKeys(t, raw, prefix+":*"); len(left) != countTagSets(t, raw, prefix, "g:") || len(scanKeys(t, raw, entries)) != 0 {
			t.Fatalf("keys left after purging everything: %d", len(left))
		}
		for _, c := range []*Cache{a, b} {
			if s := c.Stats(); s.RedisErrors != 0 || !s.RedisUp {
				t.Fatalf("redis errors: %+v", s)
			}
		}
		t.Logf("%s: purge of %d entries over %d shards took %v", mode, n/10, len(a.shards), d1)
		// A purge replayed after an outage goes through the same path.
		a.addPending([]string{"g:4", "g:5"})
		if err := a.replayPending(ctx); err != nil {
			t.Fatal(err)
		}
		if countTagSets(t, raw, prefix, "g:4") != 0 || countTagSets(t, raw, prefix, "g:5") != 0 || countTagSets(t, raw, prefix, "g:6") == 0 {
			t.Fatal("replayed purges of g:4 and g:5 left their sets, or took g:6's")
		}
		// So does dropping the whole key space.
		if err := a.dropAll(ctx); err != nil {
			t.Fatal(err)
		}
		if left := scanKeys(t, raw, prefix+":*"); len(left) != 0 {
			t.Fatalf("%d keys left after dropAll", len(left))
		}
	})

	t.Run("purge notice", func(t *testing.T) {
		prefix := testPrefix(t)
		a := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, url)})
		b := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, url)})
		d := checkPurgeNotice(t, a, b, true)
		want := int32(psClassic)
		if mode == RedisCluster {
			want = psSharded
		}
		if a.psMode.Load() != want || b.psMode.Load() != want {
			t.Fatalf("pub/sub mode %d/%d, want %d", a.psMode.Load(), b.psMode.Load(), want)
		}
		t.Logf("%s: purge notice reached the other instance in %v", mode, d)
	})
}

// checkPurgeNotice warms an entry in b's in-process tier, purges it on a
// and returns how long b took to hear of it (at most 1 s). With counted,
// the purge must also report b among the instances it reached.
func checkPurgeNotice(t *testing.T, a, b *Cache, counted bool) time.Duration {
	t.Helper()
	ctx := context.Background()
	waitFor(t, func() bool { return subscribed(a) && subscribed(b) })
	o := &origin{}
	rb := req(b, "7", "loc", o, time.Hour, 0, "user:7:location")
	if res, _ := b.Get(ctx, rb); res.Event != EventMiss {
		t.Fatal("first read not a miss")
	}
	if res, _ := b.Get(ctx, rb); res.Tier != TierLocal {
		t.Fatalf("b not warm: %v", res.Tier)
	}
	before := b.Stats().PurgesReceived
	start := time.Now()
	res := a.PurgeReport(ctx, "user:7:location")
	waitFor(t, func() bool { return b.Stats().PurgesReceived > before })
	d := time.Since(start)
	if d > time.Second || !res.Redis || (counted && res.Instances < 2) {
		t.Fatalf("purge %+v reached the other instance after %v", res, d)
	}
	if r, _ := b.Get(ctx, rb); r.Tier != TierOrigin {
		t.Fatalf("purged entry still served by b from %v", r.Tier)
	}
	return d
}

// subscribed reports whether c's purge subscription is in place: its
// channel has a subscriber on the server that carries it (a cache's own
// subscriber is enough once both caches are up).
func subscribed(c *Cache) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := c.pubsubMode(ctx)
	if err != nil {
		return false
	}
	var v map[string]int64
	if m == psSharded {
		v, err = c.rdb.PubSubShardNumSub(ctx, c.channel).Result()
	} else {
		v, err = c.rdb.PubSubNumSub(ctx, c.channel).Result()
	}
	return err == nil && v[c.channel] >= 2
}

// scanKeys lists the keys matching pattern, on every primary of a cluster.
func scanKeys(t testing.TB, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func countTagSets(t testing.TB, rdb redis.UniversalClient, prefix, tagPrefix string) int {
	n := 0
	for _, k := range scanKeys(t, rdb, prefix+":"+FormatVersion+":t:*") {
		if _, tag, ok := strings.Cut(k, "}"); ok && strings.HasPrefix(tag, tagPrefix) {
			n++
		}
	}
	return n
}
