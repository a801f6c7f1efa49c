package server

import (
	"context"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// BenchmarkCacheHitHandler measures the CPU cost of one request inside the
// server, without sockets: a bare Fiber handler against a cached hit.
func BenchmarkCacheHitHandler(b *testing.B) {
	body := wingmanBody("challenges", "", "")
	bare := fiber.New(fiber.Config{DisableStartupMessage: true})
	bare.Get("/api/challenges", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(body)
	})
	for _, v := range hitVariants() {
		b.Run(v.name, func(b *testing.B) {
			w := newWingmanApp(b, cache.Config{}, v.dec(b))
			for _, side := range []struct {
				name string
				h    fasthttp.RequestHandler
			}{{"bare", bare.Handler()}, {"cached", w.s.handler}} {
				b.Run(side.name, func(b *testing.B) {
					var rc fasthttp.RequestCtx
					rc.Request.Header.SetMethod("GET")
					rc.Request.SetRequestURI("/api/challenges")
					rc.Request.Header.Set("Authorization", "Bearer u1")
					b.ReportAllocs()
					for b.Loop() {
						rc.Response.Reset()
						side.h(&rc)
					}
				})
			}
		})
	}
}

// BenchmarkCachePolicyDecision is the cost of one decision of the default
// cache policy through the real Engine.
func BenchmarkCachePolicyDecision(b *testing.B) {
	eng := cachePluginEngine(b)
	req := abi.CacheRequest{Method: "GET", Route: "/api/users/:id/matches", Path: "/api/users/42/matches", Query: "radius_km=10", User: "42"}
	ctx := context.Background()
	b.ReportAllocs()
	failed := 0
	for b.Loop() {
		d, res := eng.Cache(ctx, &req)
		if res.Outcome != policy.OutcomeOK {
			failed++
		} else if d.Action != abi.CacheLookup {
			b.Fatalf("policy answered %+v", d)
		}
	}
	b.ReportMetric(float64(failed), "fallbacks")
}
