package server

import (
	"slices"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/observe"
	"github.com/wingman-app/wingate/host/store/memstore"
)

// cachedEndpoint returns the request handler of a server whose
// GET /api/challenges is answered from the in-process cache tier under the
// default cache policy in the real engine; with m, every observer is
// wired (HTTP middleware, cache, policy engine), without it none is.
func cachedEndpoint(b *testing.B, m *observe.Metrics) fasthttp.RequestHandler {
	b.Helper()
	cfg := cache.Config{}
	deps := Deps{Store: memstore.New(), Auth: fakeTokens{}}
	if m != nil {
		cfg.Observer = m.CacheObserver()
		deps.Metrics = m
		deps.Policies = observedCachePolicy(b, m.PolicyObserver())
	} else {
		deps.Policies = observedCachePolicy(b, nil)
	}
	c, err := cache.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	deps.Cache = c
	h := New(DefaultConfig(), deps).App().Handler()
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("GET")
	rc.Request.SetRequestURI("/api/challenges")
	for i := range 2 {
		rc.Response.Reset()
		h(&rc)
		if got := string(rc.Response.Header.Peek("X-Cache")); rc.Response.StatusCode() != 200 || (i == 1 && got != "HIT") {
			b.Fatalf("GET /api/challenges: %d, X-Cache %q", rc.Response.StatusCode(), got)
		}
	}
	return h
}

// BenchmarkCachedEndpointMetrics serves cached GET /api/challenges through
// the Fiber app without sockets, alternately on a server without metrics
// and on one with every metric on, in blocks of 256 requests so that both
// see the same machine; it reports each side's ns per request and their
// ratio (on/off: the cost of metrics, 1.10 is 10%), the median over the
// pairs of blocks.
func BenchmarkCachedEndpointMetrics(b *testing.B) {
	m, err := observe.New(observe.Options{})
	if err != nil {
		b.Fatal(err)
	}
	off := cachedEndpoint(b, nil)
	on := cachedEndpoint(b, m)
	var rcOff, rcOn fasthttp.RequestCtx
	for _, rc := range []*fasthttp.RequestCtx{&rcOff, &rcOn} {
		// The server reads the clock when a request arrives, metrics or
		// not, and the middleware times the request from that reading;
		// here it is read once, so that neither side pays for it and the
		// difference is the metrics' own cost (the end of the request is
		// still read per request).
		rc.Init2(nil, nil, false)
		rc.Request.Header.SetMethod("GET")
		rc.Request.SetRequestURI("/api/challenges")
	}
	const block = 256
	run := func(h fasthttp.RequestHandler, rc *fasthttp.RequestCtx, n int) time.Duration {
		start := time.Now()
		for range n {
			rc.Response.Reset()
			h(rc)
		}
		return time.Since(start)
	}
	var tOff, tOn time.Duration
	var ratios []float64
	var n int
	b.ReportAllocs()
	b.ResetTimer()
	for n < b.N {
		k := min(block, b.N-n)
		var dOff, dOn time.Duration
		if (n/block)%2 == 0 {
			dOff = run(off, &rcOff, k)
			dOn = run(on, &rcOn, k)
		} else {
			dOn = run(on, &rcOn, k)
			dOff = run(off, &rcOff, k)
		}
		tOff += dOff
		tOn += dOn
		ratios = append(ratios, float64(dOn)/float64(dOff))
		n += k
	}
	b.StopTimer()
	slices.Sort(ratios)
	if string(rcOn.Response.Header.Peek("X-Cache")) != "HIT" || string(rcOff.Response.Header.Peek("X-Cache")) != "HIT" {
		b.Fatal("not served from the cache")
	}
	b.ReportMetric(float64(tOff.Nanoseconds())/float64(b.N), "ns-off/req")
	b.ReportMetric(float64(tOn.Nanoseconds())/float64(b.N), "ns-on/req")
	// The median of the block pairs' ratios shrugs off the bursts of
	// other work on a shared machine, which the totals do not.
	b.ReportMetric(ratios[len(ratios)/2], "on/off")
}

// BenchmarkObserveHTTP is the cost of recording one request (OpenTelemetry
// histogram on a pre-bound attribute set, plus the rolling window).
func BenchmarkObserveHTTP(b *testing.B) {
	m, err := observe.New(observe.Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveHTTP("GET", "/api/challenges", 200, 250*time.Microsecond, now)
		}
	})
}
