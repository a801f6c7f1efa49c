package cache

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// TestClusterFailover kills, under load, the primary that serves the
// purge channel's slot and some entries' slots. Its replica takes over;
// no request fails meanwhile; entries on the lost primary's slots go
// through Redis again within 5 s of the kill; purge notices flow again.
func TestClusterFailover(t *testing.T) {
	cl, err := testkit.StartRedisCluster()
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(cl.Stop)
	ctx := context.Background()
	prefix := testPrefix(t)
	var logBuf testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	a := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, cl.URL()), Logger: log})
	b := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, cl.URL())})
	waitFor(t, func() bool { return subscribed(a) && subscribed(b) })

	raw := openClient(t, cl.URL()).(*redis.ClusterClient)
	node, err := raw.MasterForKey(ctx, a.channel)
	if err != nil {
		t.Fatal(err)
	}
	var victim *testkit.RedisNode
	for _, n := range cl.Nodes {
		if n.Addr() == node.Options().Addr {
			victim = n
		}
	}
	// Keys whose Redis key the victim serves.
	var probes []string
	for i := 0; len(probes) < 400; i++ {
		k := a.Key("", fmt.Sprintf("probe-%d", i))
		n, err := raw.MasterForKey(ctx, a.redisKey(k))
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr == victim.Addr() {
			probes = append(probes, fmt.Sprintf("probe-%d", i))
		}
	}
	// Through Redis before the kill.
	if !throughRedis(ctx, a, b, probes[0]) {
		t.Fatal("an entry did not go through Redis before the kill")
	}

	probe := testkit.StartSchedProbe()
	load := startCacheLoad(ctx, a, b, 2)
	time.Sleep(300 * time.Millisecond)

	kill := time.Now()
	victim.Kill()
	okCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	var promoted time.Duration
	var resumed time.Duration
	done := make(chan error, 1)
	go func() { done <- cl.WaitPromoted(okCtx, victim) }()
	for i := 1; ; i++ {
		if i >= len(probes) || time.Since(kill) > 15*time.Second {
			cancel()
			hctx, hc := context.WithTimeout(ctx, time.Second)
			herr := a.healthy(hctx)
			hc()
			slots, serr := raw.ClusterSlots(ctx).Result()
			t.Logf("healthy: %v; slots %v %v", herr, slots, serr)
			t.Fatalf("entries on the lost primary's slots not through Redis %v after the kill (promoted after %v)\na: %+v\nb: %+v\n%s",
				time.Since(kill), promoted, a.Stats(), b.Stats(), logBuf.String())
		}
		if promoted == 0 {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				promoted = time.Since(kill)
			default:
			}
		}
		if throughRedis(ctx, a, b, probes[i]) {
			resumed = time.Since(kill)
			break
		}
	}
	if promoted == 0 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		promoted = time.Since(kill)
	}
	cancel()
	time.Sleep(200 * time.Millisecond)
	reqs, errs := load.stop()
	starved := probe.Stop()
	t.Logf("replica promoted (cluster_state:ok) %v after the kill; cache through Redis again after %v; %d requests, %d errors; worst scheduling delay %v",
		promoted, resumed, reqs, errs, starved)
	if errs != 0 {
		t.Fatalf("%d of %d requests failed during the failover", errs, reqs)
	}
	if resumed > 5*time.Second+starved {
		t.Fatalf("cache went through Redis again %v after the kill, want within 5 s", resumed)
	}
	// The purge channel's slot moved to the promoted replica: notices flow
	// again once both instances have subscribed there.
	d := checkPurgeNotice(t, a, b, true)
	t.Logf("purge notice after the failover reached the other instance in %v", d)
}

// throughRedis stores key through a and reports whether b, which never
// saw it, then reads it from Redis.
func throughRedis(ctx context.Context, a, b *Cache, key string) bool {
	o := &origin{}
	if _, err := a.Get(ctx, req(a, "", key, o, time.Minute, 0, "probe")); err != nil {
		return false
	}
	time.Sleep(50 * time.Millisecond) // a writes behind
	res, err := b.Get(ctx, req(b, "", key, o, time.Minute, 0, "probe"))
	return err == nil && res.Tier == TierRedis
}

// TestSentinelFailover kills the primary under load: the sentinel promotes
// the replica, no request fails, and entries go through Redis again within
// 5 s of the kill (the sentinel alone needs its 1 s down-after time and an
// election).
func TestSentinelFailover(t *testing.T) {
	s := testkit.StartRedisSentinel(t)
	ctx := context.Background()
	prefix := testPrefix(t)
	a := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, s.URL())})
	b := newTestCache(t, Config{Prefix: prefix, Redis: openClient(t, s.URL())})
	waitFor(t, func() bool { return subscribed(a) && subscribed(b) })
	if !throughRedis(ctx, a, b, "before") {
		t.Fatal("an entry did not go through Redis before the kill")
	}
	probe := testkit.StartSchedProbe()
	load := startCacheLoad(ctx, a, b, 3)
	time.Sleep(300 * time.Millisecond)
	kill := time.Now()
	s.Primary.Kill()
	var resumed time.Duration
	for i := 0; ; i++ {
		if time.Since(kill) > 15*time.Second {
			t.Fatalf("not through Redis %v after the kill\na: %+v\nb: %+v", time.Since(kill), a.Stats(), b.Stats())
		}
		if throughRedis(ctx, a, b, fmt.Sprintf("after-%d", i)) {
			resumed = time.Since(kill)
			break
		}
	}
	time.Sleep(200 * time.Millisecond)
	reqs, errs := load.stop()
	starved := probe.Stop()
	t.Logf("through the promoted replica %v after the kill; %d requests, %d errors; worst scheduling delay %v",
		resumed, reqs, errs, starved)
	if errs != 0 {
		t.Fatalf("%d of %d requests failed during the failover", errs, reqs)
	}
	if resumed > 5*time.Second+starved {
		t.Fatalf("cache went through Redis again %v after the kill, want within 5 s", resumed)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	if addr, err := sc.GetMasterAddrByName(ctx, "primary").Result(); err != nil || len(addr) != 2 || addr[0]+":"+addr[1] != s.Replica.Addr() {
		t.Fatalf("sentinel names %v (%v) as the primary, want the replica %s", addr, err, s.Replica.Addr())
	}
	d := checkPurgeNotice(t, a, b, true)
	t.Logf("purge notice after the failover reached the other instance in %v", d)
}

// cacheLoad is four workers reading keys through two caches, each
// request a millisecond apart, until stopped.
type cacheLoad struct {
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	errs, reqs atomic.Int64
}

// startCacheLoad starts the load on a and b (seed picks the keys).
func startCacheLoad(ctx context.Context, a, b *Cache, seed uint64) *cacheLoad {
	l := &cacheLoad{}
	load, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	for w := range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), seed))
			o := &origin{}
			for load.Err() == nil {
				c := a
				if rng.IntN(2) == 0 {
					c = b
				}
				if _, err := c.Get(ctx, req(c, "", fmt.Sprintf("k%d", rng.IntN(2000)), o, time.Second, 0, "load")); err != nil {
					l.errs.Add(1)
				}
				l.reqs.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return l
}

// stop ends the load and returns its requests and failures.
func (l *cacheLoad) stop() (reqs, errs int64) {
	l.cancel()
	l.wg.Wait()
	return l.reqs.Load(), l.errs.Load()
}
