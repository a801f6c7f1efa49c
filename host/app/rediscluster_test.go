package app

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/internal/testkit"
)

// TestPurgeReachesEveryInstanceOnCluster: two instances on a Redis
// Cluster (REDIS_URL redis+cluster://): an entry one stores, the other
// serves from Redis; a purge by tag on one drops it from both and from
// the cluster, and no answer is a 5xx.
func TestPurgeReachesEveryInstanceOnCluster(t *testing.T) {
	cache.SilenceRedisLogs()
	cl, err := testkit.StartRedisCluster()
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(cl.Stop)
	a, baseA := listening(t, nil, func(c *Config) { c.RedisURL = cl.URL() })
	b, baseB := listening(t, nil, func(c *Config) { c.RedisURL = cl.URL() })
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { rdb.Close() })
	stored := func() int {
		var n atomic.Int64
		err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
			keys, err := c.Keys(ctx, "wingate:cache:"+cache.FormatVersion+":k:*").Result()
			n.Add(int64(len(keys)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return int(n.Load())
	}
	paths := []string{"/api/challenges?limit=1", "/api/challenges?limit=2", "/api/challenges?limit=3", "/api/challenges?limit=4"}
	for _, p := range paths {
		if r := call(t, "GET", baseA+p, ""); r.status != 200 {
			t.Fatalf("A %s: %d %s", p, r.status, r.body)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for stored() < len(paths) {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster holds %d entries, want %d", stored(), len(paths))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range paths {
		if r := call(t, "GET", baseB+p, ""); r.status != 200 || r.h.Get("X-Cache") != "HIT" {
			t.Fatalf("B %s: %d X-Cache %q, want a hit from Redis", p, r.status, r.h.Get("X-Cache"))
		}
	}
	if st := b.deps.Cache.Stats(); st.RedisHits != uint64(len(paths)) || st.RedisErrors != 0 {
		t.Fatalf("B's cache: %+v", st)
	}
	admin := []string{"Authorization", "Bearer " + testAdminToken, "Content-Type", "application/json"}
	p := call(t, "POST", opsBase(a)+"/admin/cache/purge", `{"tags": ["challenges"]}`, admin...)
	var ans struct {
		Redis        bool  `json:"redis"`
		RedisEntries int64 `json:"redis_entries"`
		Instances    int64 `json:"instances"`
	}
	if p.status != 200 || json.Unmarshal([]byte(p.body), &ans) != nil || !ans.Redis || ans.RedisEntries != int64(len(paths)) || ans.Instances != 2 {
		t.Fatalf("purge on A: %d %s, want redis true, %d entries, 2 instances", p.status, p.body, len(paths))
	}
	if n := stored(); n != 0 {
		t.Fatalf("%d entries left in the cluster after the purge", n)
	}
	deadline = time.Now().Add(5 * time.Second)
	for _, path := range paths {
		for {
			r := call(t, "GET", baseB+path, "")
			if r.status >= 500 {
				t.Fatalf("B %s: %d", path, r.status)
			}
			if r.h.Get("X-Cache") == "MISS" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("B still answers %s with %q 5 s after the purge", path, r.h.Get("X-Cache"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestBadRedisURL: a REDIS_URL that cannot be read stops the build with a
// usage error, before anything starts, that does not repeat its
// password.
func TestBadRedisURL(t *testing.T) {
	for _, u := range []string{"redis+cluster://app:hunter2-secret@h1:7000/3", "redis+sentinel://:hunter2-secret@s1:26379",
		"redis://app:hunter2-secret@h:port/0", "memcached://app:hunter2-secret@h:1"} {
		cfg := Defaults()
		cfg.PolicyDir, cfg.JWTSecret, cfg.AdminToken, cfg.RedisURL = policyDir(t), testSecret, testAdminToken, u
		a, err := Build(context.Background(), cfg, quiet())
		if err == nil {
			a.Stop(context.Background())
			t.Fatalf("%s accepted", u)
		}
		if !errors.Is(err, ErrUsage) || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "REDIS_URL") {
			t.Fatalf("%s: %v", u, err)
		}
	}
}
