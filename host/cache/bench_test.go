package cache

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// BenchmarkPurgePropagation: one op is a purge on instance A until
// instance B has applied it (Redis pub/sub on loopback); p50/p99/max of
// that delay are reported.
func BenchmarkPurgePropagation(b *testing.B) {
	rs := testkit.StartRedis(b)
	prefix := testPrefix(b)
	a := newTestCache(b, Config{Prefix: prefix, Redis: redisClient(b, rs)})
	c := newTestCache(b, Config{Prefix: prefix, Redis: redisClient(b, rs)})
	time.Sleep(50 * time.Millisecond)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		before := c.Stats().PurgesReceived
		start := time.Now()
		a.Purge(context.Background(), "user:"+strconv.Itoa(i))
		for c.Stats().PurgesReceived == before {
			if time.Since(start) > 5*time.Second {
				b.Fatal("purge not received within 5s")
			}
			time.Sleep(20 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99_ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max_ms")
}

// BenchmarkGetHit is the in-process hit path of Get.
func BenchmarkGetHit(b *testing.B) {
	c := newTestCache(b, Config{})
	o := &origin{}
	r := req(c, "42", "/api/users/42/reputation", o, time.Hour, time.Minute, "user:42")
	if _, err := c.Get(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res, _ := c.Get(context.Background(), r); res.Event != EventHit {
				b.Fatal("not a hit")
			}
		}
	})
}
