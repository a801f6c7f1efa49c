package observe

import (
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/host/observe/event"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The hooks on the request path, one request's worth each.
func BenchmarkHooks(b *testing.B) {
	m, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Shutdown(b.Context())
	now := time.Now()
	b.Run("http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveHTTP("GET", "/api/challenges", 200, 250*time.Microsecond, now)
		}
	})
	b.Run("cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveCache("/api/challenges", TierLocal, CacheHit)
		}
	})
	b.Run("policy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObservePolicyDecision("cache", "cache", "ebae8e5bfdcb", "ok", 900*time.Nanosecond)
		}
	})
	rec := m.Route("GET", "/api/challenges")
	b.Run("http-recorder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec.Observe(200, 250*time.Microsecond, now)
		}
	})
	po := m.PolicyObserver()
	b.Run("policy-observer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			po.Decision(abi.KindCache, "cache", "ebae8e5bfdcb", decision.OutcomeOK, 900*time.Nanosecond)
		}
	})
	co := m.CacheObserver()
	b.Run("cache-observer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			co.CacheEvent("/api/challenges", event.CacheTierLocal, event.CacheHit)
		}
	})
	b.Run("clock", func(b *testing.B) {
		for b.Loop() {
			_ = m.Now()
		}
	})
}
