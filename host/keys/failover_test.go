package keys_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/keys"
)

// TestBudgetClusterFailover: three instances spend one key's budget on a
// six-node Redis Cluster while the primary of the key's slot is killed.
// Reservations wait for a replica (WaitReplicas 1) or not (0); after the
// failover the key periods written lately are reloaded from the ledger.
// The spend never passes the budget with WAIT; without it the test
// reports what a failover lost.
func TestBudgetClusterFailover(t *testing.T) {
	cl, err := testkit.StartRedisCluster()
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(cl.Stop)
	// Each run kills a primary that still has its replica: one of those
	// the cluster started with.
	prims, err := cl.Primaries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	killed := map[string]bool{}
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("wait %d", wait), func(t *testing.T) {
			accepted, budget, refusedDown, unrepl := budgetFailoverRun(t, cl, wait, prims, killed)
			t.Logf("WaitReplicas %d: %d calls accepted on a budget for %d (%+d), %d refused while the slot had no primary, %d reservations not acknowledged by a replica in time",
				wait, accepted, budget, accepted-budget, refusedDown, unrepl)
			if wait > 0 && accepted > budget {
				t.Errorf("with WAIT, %d calls accepted on a budget for %d", accepted, budget)
			}
			if accepted < budget*9/10 {
				t.Errorf("only %d of the budget's %d calls accepted", accepted, budget)
			}
		})
	}
}

func budgetFailoverRun(t *testing.T, cl *testkit.RedisCluster, wait int, prims []*testkit.RedisNode, killed map[string]bool) (accepted, budget int, refusedDown, unreplicated int64) {
	ctx := context.Background()
	const cost = 1000
	budget = 300
	ledger := keys.NewMemStore()
	var ls []*keys.Limiter
	for range 3 {
		rdb, _, err := cache.OpenRedis(cl.URL(), 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		ls = append(ls, keys.NewLimiter(keys.LimiterConfig{Redis: rdb, WaitReplicas: wait, WaitTimeout: 100 * time.Millisecond,
			RetryRedis: 100 * time.Millisecond,
			Spent: func(ctx context.Context, id string, from, to time.Time) (keys.Micros, error) {
				sp, err := ledger.KeySpend(ctx, id, from, to)
				return sp.Cost, err
			}}))
	}
	// The primary serving the key's counters.
	raw, _, err := cache.OpenRedis(cl.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	period := keys.PeriodMonth.Start(time.Now())
	var k *keys.Key
	var victim *testkit.RedisNode
	for victim == nil {
		k = &keys.Key{ID: keys.NewID(), Limits: keys.Limits{Budget: keys.Micros(budget * cost), BudgetPeriod: keys.PeriodMonth}}
		node, err := raw.(*redis.ClusterClient).MasterForKey(ctx, fmt.Sprintf("wg:vk:{%s}:spent:%d", k.ID, period.Unix()))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range prims {
			if n.Addr() == node.Options().Addr && !killed[n.Addr()] {
				victim = n
			}
		}
	}
	killed[victim.Addr()] = true
	if err := ledger.CreateKey(ctx, *k, []byte(k.ID)); err != nil {
		t.Fatal(err)
	}
	var ok, down, budgetRefusals atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[w%3]
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := l.Reserve(ctx, k, cost, 0)
				var le *keys.LimitError
				switch {
				case err == nil:
					time.Sleep(3 * time.Millisecond) // the provider call
					if err := ledger.RecordUsage(ctx, []keys.Usage{{KeyID: k.ID, At: time.Now(), RequestID: keys.NewID(), Cost: cost}}); err != nil {
						t.Error(err)
					}
					l.Settle(ctx, r, cost, 0)
					ok.Add(1)
				case errors.As(err, &le):
					budgetRefusals.Add(1)
					time.Sleep(5 * time.Millisecond)
				case errors.Is(err, keys.ErrLimiterDown):
					down.Add(1)
					time.Sleep(5 * time.Millisecond)
				default:
					t.Errorf("reserve: %v", err)
					return
				}
			}
		}()
	}
	// Kill the primary once about a third of the budget is spent.
	for ok.Load() < int64(budget/3) {
		time.Sleep(time.Millisecond)
	}
	victim.Kill()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.WaitPromoted(wctx, victim); err != nil {
		t.Fatalf("no replica promoted: %v", err)
	}
	// Spend the rest: run until refusals for the budget are all there is.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		before := ok.Load()
		time.Sleep(500 * time.Millisecond)
		if ok.Load() == before && budgetRefusals.Load() > 0 {
			break
		}
	}
	close(stop)
	wg.Wait()
	for _, l := range ls {
		l.Wait(ctx)
		unreplicated += l.Unreplicated()
	}
	return int(ok.Load()), budget, down.Load(), unreplicated
}
