package keys_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/keys"
)

// BenchmarkReserveSettle is one keyed call's share of the limits: a
// reservation (one script round trip) and its settle (queued, pipelined)
// against a private redis-server, on a key with a budget, rpm and tpm.
func BenchmarkReserveSettle(b *testing.B) {
	r := testkit.StartRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialerRetries: 1, ReadTimeout: time.Second})
	defer rdb.Close()
	l := keys.NewLimiter(keys.LimiterConfig{Redis: rdb,
		Spent: func(context.Context, string, time.Time, time.Time) (keys.Micros, error) { return 0, nil }})
	defer l.Close(context.Background())
	k := &keys.Key{ID: keys.NewID(), Limits: keys.Limits{Budget: 1 << 50, RPM: keys.MaxRPM, TPM: keys.MaxTPM, BudgetPeriod: keys.PeriodMonth}}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := l.Reserve(ctx, k, 100, 10)
		if err != nil {
			b.Fatal(err)
		}
		l.Settle(ctx, res, 90, 9)
	}
	b.StopTimer()
	l.Wait(ctx)
}
