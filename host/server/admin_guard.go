package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/apierr"
)

// Failed admin attempts are limited per client address: each address has
// a bucket of AdminFailBurst failures that refills one every
// AdminFailEvery. With the bucket empty, a request to /admin is answered
// 429 rate_limited with Retry-After before its token is looked at, right
// token or not, until the bucket has refilled one. Each failure is logged
// with the address and the reason, never the token presented.
const (
	AdminFailBurst = 10
	AdminFailEvery = 6 * time.Second
	// adminFailClients bounds the addresses remembered; past it, full
	// buckets are forgotten, then new addresses share one bucket.
	adminFailClients = 4096
)

// adminGuard holds the failure buckets.
type adminGuard struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[string]*failBucket
	shared  failBucket // for addresses past adminFailClients
}

type failBucket struct {
	tokens float64
	at     time.Time
}

// refill brings b up to date at now.
func (b *failBucket) refill(now time.Time) {
	if b.at.IsZero() {
		b.tokens, b.at = AdminFailBurst, now
		return
	}
	b.tokens = min(AdminFailBurst, b.tokens+float64(now.Sub(b.at))/float64(AdminFailEvery))
	b.at = now
}

func (g *adminGuard) bucket(ip string) *failBucket {
	if b, ok := g.buckets[ip]; ok {
		return b
	}
	if len(g.buckets) >= adminFailClients {
		now := g.now()
		for k, b := range g.buckets {
			if b.refill(now); b.tokens >= AdminFailBurst {
				delete(g.buckets, k)
			}
		}
		if len(g.buckets) >= adminFailClients {
			return &g.shared
		}
	}
	b := &failBucket{}
	g.buckets[ip] = b
	return b
}

// blocked returns how long ip must wait before its next attempt (0: it
// may try now).
func (g *adminGuard) blocked(ip string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.bucket(ip)
	b.refill(g.now())
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(AdminFailEvery))
}

// fail takes one failure from ip's bucket and returns what is left.
func (g *adminGuard) fail(ip string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.bucket(ip)
	b.refill(g.now())
	b.tokens = max(0, b.tokens-1)
	return int(b.tokens)
}

// requireAdmin guards /admin: 403 admin_disabled without a configured
// token; 429 rate_limited while the client's failures are over the
// limit; 401 for a missing or wrong token. The token is compared in
// constant time (the digests of both, so neither its content nor its
// length leaks through timing).
func (s *Server) requireAdmin(c *fiber.Ctx) error {
	if s.deps.AdminToken == "" {
		return apierr.New(apierr.AdminDisabled)
	}
	ip := c.Context().RemoteIP().String()
	if wait := s.admin.blocked(ip); wait > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		return apierr.Newf(apierr.RateLimited, "too many failed admin attempts from this address, retry later")
	}
	hdr := c.Request().Header.Peek(fiber.HeaderAuthorization)
	reason := ""
	if _, ok := bearer(hdr); !ok {
		reason = "missing bearer token"
	} else if !s.adminBearer(hdr) {
		reason = "wrong admin token"
	}
	if reason == "" {
		return c.Next()
	}
	left := s.admin.fail(ip)
	s.log.Warn("admin: refused", "client", ip, "method", c.Method(), "path", c.Path(), "reason", reason, "attempts_left", left)
	return unauthorized(reason)
}
