package observe

import (
	"testing"
	"time"
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
	b.Run("clock", func(b *testing.B) {
		for b.Loop() {
			_ = m.Now()
		}
	})
}
