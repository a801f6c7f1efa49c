package keys_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/keys"
)

// limiters returns n limiters (n instances) sharing a private Redis and
// one ledger.
func limiters(t *testing.T, n int, mode keys.Mode, ledger *keys.MemStore) ([]*keys.Limiter, *testkit.Redis) {
	t.Helper()
	r := testkit.StartRedis(t)
	var out []*keys.Limiter
	for range n {
		rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond,
			ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { rdb.Close() })
		out = append(out, keys.NewLimiter(keys.LimiterConfig{Redis: rdb, Mode: mode, Replicas: n,
			Spent: func(ctx context.Context, id string, from, to time.Time) (keys.Micros, error) {
				sp, err := ledger.KeySpend(ctx, id, from, to)
				return sp.Cost, err
			}}))
	}
	return out, r
}

func budgetKey(budget keys.Micros) *keys.Key {
	return &keys.Key{ID: keys.NewID(), Limits: keys.Limits{Budget: budget, BudgetPeriod: keys.PeriodMonth}}
}

// TestReserveRaceOverInstances: 300 calls at once over three instances on
// a key whose budget covers 50: exactly 50 reservations are taken, and
// once they settle the spent figure is their sum.
func TestReserveRaceOverInstances(t *testing.T) {
	ls, _ := limiters(t, 3, keys.ModeClosed, keys.NewMemStore())
	k := budgetKey(50 * 1000)
	var taken atomic.Int64
	var res sync.Map
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := ls[i%3].Reserve(context.Background(), k, 1000, 10)
			var le *keys.LimitError
			switch {
			case err == nil:
				taken.Add(1)
				res.Store(i, r)
			case errors.As(err, &le) && le.Limit == "budget":
			default:
				t.Errorf("reserve: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if taken.Load() != 50 {
		t.Fatalf("%d reservations taken, want 50", taken.Load())
	}
	// Settle for less: the freed money admits more.
	res.Range(func(i, r any) bool {
		ls[i.(int)%3].Settle(context.Background(), r.(*keys.Reservation), 500, 10)
		return true
	})
	for _, l := range ls {
		l.Wait(context.Background())
	}
	n := 0
	for ; n < 100; n++ {
		if _, err := ls[n%3].Reserve(context.Background(), k, 1000, 10); err != nil {
			break
		}
	}
	if n != 25 {
		t.Errorf("after settling at half the estimate, %d more taken, want 25", n)
	}
}

// TestRateLimits: rpm and tpm hold over instances; a refusal says when to
// retry.
func TestRateLimits(t *testing.T) {
	ls, _ := limiters(t, 2, keys.ModeClosed, keys.NewMemStore())
	k := &keys.Key{ID: keys.NewID(), Limits: keys.Limits{RPM: 7}}
	ok := 0
	for i := range 20 {
		_, err := ls[i%2].Reserve(context.Background(), k, 0, 1)
		if err == nil {
			ok++
			continue
		}
		var le *keys.LimitError
		if !errors.As(err, &le) || le.Limit != "rpm" || le.RetryAfter <= 0 || le.RetryAfter > time.Minute {
			t.Fatalf("refusal %v", err)
		}
	}
	if ok != 7 && ok != 14 { // 14 when the minute turned mid-loop
		t.Errorf("%d of 20 requests admitted at rpm 7", ok)
	}
	kt := &keys.Key{ID: keys.NewID(), Limits: keys.Limits{TPM: 1000}}
	r, err := ls[0].Reserve(context.Background(), kt, 0, 900)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls[1].Reserve(context.Background(), kt, 0, 200); err == nil {
		t.Error("1100 tokens reserved at tpm 1000")
	}
	ls[0].Settle(context.Background(), r, 0, 300) // the call used fewer
	ls[0].Wait(context.Background())
	if _, err := ls[1].Reserve(context.Background(), kt, 0, 200); err != nil {
		t.Errorf("after settling at 300 tokens: %v", err)
	}
}

// TestAbandonedReservationExpires: an instance that dies between reserve
// and settle holds its reservation only until ReservationTTL.
func TestAbandonedReservationExpires(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	now := time.Now()
	clock := func() time.Time { return now }
	l := keys.NewLimiter(keys.LimiterConfig{Redis: rdb, ReservationTTL: time.Minute, Now: clock,
		Spent: func(context.Context, string, time.Time, time.Time) (keys.Micros, error) { return 0, nil }})
	k := budgetKey(1000)
	if _, err := l.Reserve(context.Background(), k, 1000, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(context.Background(), k, 1, 0); err == nil {
		t.Fatal("the budget was held, yet a second reservation was taken")
	}
	now = now.Add(61 * time.Second)
	if _, err := l.Reserve(context.Background(), k, 1000, 0); err != nil {
		t.Errorf("the abandoned reservation still holds the budget: %v", err)
	}
}

// TestSpentReloadsFromLedger: a Redis that lost its data (restarted
// without persistence) gets the period's spend back from the ledger.
func TestSpentReloadsFromLedger(t *testing.T) {
	ledger := keys.NewMemStore()
	ls, r := limiters(t, 1, keys.ModeClosed, ledger)
	k := budgetKey(10_000)
	now := time.Now()
	if err := ledger.CreateKey(context.Background(), *k, []byte("h")); err != nil {
		t.Fatal(err)
	}
	if err := ledger.RecordUsage(context.Background(), []keys.Usage{{KeyID: k.ID, At: now, RequestID: "a", Cost: 9_000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ls[0].Reserve(context.Background(), k, 2_000, 0); err == nil {
		t.Fatal("the ledger's 9,000 of 10,000 were not counted")
	}
	r.Kill()
	r.Start()
	if _, err := ls[0].Reserve(context.Background(), k, 2_000, 0); err == nil {
		t.Fatal("after a Redis restart the ledger's spend was not reloaded")
	}
	if _, err := ls[0].Reserve(context.Background(), k, 1_000, 0); err != nil {
		t.Errorf("the last 1,000: %v", err)
	}
}

// TestRedisDownClosed: with Redis gone, limited keys are refused and
// unlimited ones pass.
func TestRedisDownClosed(t *testing.T) {
	ls, r := limiters(t, 1, keys.ModeClosed, keys.NewMemStore())
	k := budgetKey(10_000)
	if _, err := ls[0].Reserve(context.Background(), k, 1, 0); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	if _, err := ls[0].Reserve(context.Background(), k, 1, 0); !errors.Is(err, keys.ErrLimiterDown) {
		t.Errorf("Redis down, closed: err %v, want ErrLimiterDown", err)
	}
	if _, err := ls[0].Reserve(context.Background(), &keys.Key{ID: "vk_free"}, 1, 0); err != nil {
		t.Errorf("a key with no limits needs no Redis: %v", err)
	}
}

// TestRedisDownLocal: three instances with Redis gone each take a third
// of what was left: together they stay within the budget and one
// reservation each.
func TestRedisDownLocal(t *testing.T) {
	ledger := keys.NewMemStore()
	ls, r := limiters(t, 3, keys.ModeLocal, ledger)
	k := budgetKey(60 * 1000)
	if err := ledger.CreateKey(context.Background(), *k, []byte("h")); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		res, err := ls[i%3].Reserve(context.Background(), k, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		ls[i%3].Settle(context.Background(), res, 1000, 0)
		if err := ledger.RecordUsage(context.Background(), []keys.Usage{{KeyID: k.ID, At: time.Now(), RequestID: keys.NewID(), Cost: 1000}}); err != nil {
			t.Fatal(err)
		}
	}
	r.Kill()
	taken := 0
	for i := range 300 {
		if _, err := ls[i%3].Reserve(context.Background(), k, 1000, 0); err == nil {
			taken++
		}
	}
	if taken < 45 || taken > 48 {
		t.Errorf("Redis down: %d more taken over three instances, want 48 (what was left) at most and at least 45", taken)
	}
}
