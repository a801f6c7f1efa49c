package rollout_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/rollout"
)

// TestRedisNotifierOnCluster: on a Redis Cluster, a notice reaches a
// listener within 1 s whichever nodes the publisher and the listener talk
// to (the cluster bus carries PUBLISH to every node).
func TestRedisNotifierOnCluster(t *testing.T) {
	cl, err := testkit.StartRedisCluster()
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(cl.Stop)
	addrs := cl.Addrs()
	// Clients seeded with different nodes; keyless PUBLISH and SUBSCRIBE
	// go to a node each picks at random.
	pub := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs[:1]})
	sub := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs[3:4]})
	t.Cleanup(func() { pub.Close(); sub.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	go rollout.NewRedisNotifier(sub, "wingate-test:policy").Listen(ctx, func() { calls.Add(1) })
	// Listen calls fn once when subscribed.
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("listener never subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	n := rollout.NewRedisNotifier(pub, "wingate-test:policy")
	for i := range 5 {
		before := calls.Load()
		start := time.Now()
		if err := n.Notify(ctx); err != nil {
			t.Fatal(err)
		}
		for calls.Load() == before {
			if time.Since(start) > time.Second {
				t.Fatalf("notice %d not heard within 1 s", i)
			}
			time.Sleep(time.Millisecond)
		}
		t.Logf("notice %d heard after %v", i, time.Since(start))
	}
}
