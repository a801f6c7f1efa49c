package server

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Cache tags the API's writes purge. The default cache policy tags its
// entries with the same names (plugins/cache, policies/policies.json).
const (
	// TagChallenges covers the challenge catalogue and challenge details.
	TagChallenges = "challenges"
)

// TagUser covers a user's reputation.
func TagUser(id int64) string { return "user:" + strconv.FormatInt(id, 10) }

// TagUserLocation covers a user's location and the matches computed from it.
func TagUserLocation(id int64) string { return TagUser(id) + ":location" }

// cacheRefreshKey marks the internal sub-request that refreshes a stale
// entry in the background: it passes authentication and the gate's
// checks again, then goes straight to the handler.
type cacheRefreshKey struct{}

// Response header names and X-Cache values, as bytes to skip header-name
// normalisation on the hot path.
var (
	headerXCache = []byte("X-Cache")
	headerAge    = []byte("Age")
	xCacheValue  = [...][]byte{
		cache.EventHit:    []byte(cache.EventHit.String()),
		cache.EventMiss:   []byte(cache.EventMiss.String()),
		cache.EventStale:  []byte(cache.EventStale.String()),
		cache.EventBypass: []byte(cache.EventBypass.String()),
	}
	ageZero = []byte("0")
)

// setCacheHeaders sets X-Cache and, unless negative, Age (seconds).
func setCacheHeaders(c *fiber.Ctx, ev cache.Event, age time.Duration) {
	h := &c.Response().Header
	h.SetCanonical(headerXCache, xCacheValue[ev])
	switch {
	case age < 0:
	case age < time.Second:
		h.SetCanonical(headerAge, ageZero)
	default:
		var buf [20]byte
		h.SetCanonical(headerAge, strconv.AppendInt(buf[:0], int64(age/time.Second), 10))
	}
}

// PurgeCache drops every cached response carrying one of tags, on every
// instance. It is a no-op without a cache.
func (s *Server) PurgeCache(ctx context.Context, tags ...string) {
	if s.deps.Cache != nil && len(tags) > 0 {
		s.deps.Cache.Purge(ctx, tags...)
	}
}

// cacheRequest builds the policy's view of the request in sc from its
// canonical form (gate): the route template, the canonical path and
// query, the authenticated caller. The strings alias sc and the route:
// valid only during the request.
func cacheRequest(c *fiber.Ctx, cr *compiledRoute, sc *cacheScratch) {
	sc.req = abi.CacheRequest{
		Method: c.Method(),
		Route:  cr.Path,
		Path:   utils.UnsafeString(sc.path),
		Query:  utils.UnsafeString(sc.query),
		User:   utils.UnsafeString(sc.user),
	}
}

// cacheDeciderInto is implemented by deciders that can decode a cache
// decision into the caller's memory (policy.Engine.CacheInto).
type cacheDeciderInto interface {
	CacheInto(ctx context.Context, req *abi.CacheRequest, d *abi.CacheDecision, buf []byte) ([]byte, policy.Result)
}

// cacheScratch is the memory of one request's trip through the cache
// middleware, pooled so that a hit allocates nothing: the policy's view
// of the request, its decision (whose strings are views of buf) and the
// full cache key. Whatever outlives the request is copied out of it.
type cacheScratch struct {
	req   abi.CacheRequest
	dec   abi.CacheDecision
	buf   []byte
	key   []byte
	user  []byte   // the caller's id in decimal; empty when anonymous
	path  []byte   // the canonical path
	query []byte   // the canonical query
	ids   [4]int64 // the route's ids, in template order
	// private is true when the key carries the caller (decideKey): the
	// answer is the caller's own, Cache-Control private.
	private bool
}

var cacheScratchPool = sync.Pool{New: func() any { return new(cacheScratch) }}

// poisonScratch, set by tests, overwrites a scratch's bytes when it goes
// back to the pool, so that a string kept past its request (a key stored
// as a view, say) turns into garbage that the tests see.
var poisonScratch atomic.Bool

// releaseScratch returns sc to the pool.
func releaseScratch(sc *cacheScratch) {
	if poisonScratch.Load() {
		for _, b := range [][]byte{sc.buf, sc.key, sc.user, sc.path, sc.query} {
			b = b[:cap(b)]
			for i := range b {
				b[i] = '~'
			}
		}
	}
	cacheScratchPool.Put(sc)
}

// decideCache asks the cache policy about sc.req, into sc.dec.
func (s *Server) decideCache(ctx context.Context, sc *cacheScratch) (res policy.Result) {
	if into, ok := s.deps.CachePolicy.(cacheDeciderInto); ok {
		sc.buf, res = into.CacheInto(ctx, &sc.req, &sc.dec, sc.buf[:0])
	} else {
		sc.dec, res = s.deps.CachePolicy.Cache(ctx, &sc.req)
	}
	return res
}

// serveCached asks the cache policy about the request canonicalised in
// sc and serves it from the in-process tier, then Redis, then the
// handler. The key is the host's (requestKey): the policy's key can only
// split entries further, and its scope only narrows a public route to
// per-caller entries. On a bypass decision for a write, the decision's
// tags are purged once the write succeeds.
func (s *Server) serveCached(c *fiber.Ctx, cr *compiledRoute, sc *cacheScratch) error {
	cc := s.deps.Cache
	d := &sc.dec
	if !s.decideKey(c, cr, sc) {
		return s.cacheBypass(c, sc.req.Method, cr.Path, d.Tags, cr.Access != Public)
	}
	if res, ok := cc.Fresh(utils.UnsafeString(sc.key), cr.Path); ok {
		writeEntry(c, res, sc.private)
		return nil
	}
	leaderCtx := c
	r := &cache.Request{
		Key:   string(sc.key), // the scratch goes back to the pool; the fill may outlive the request
		Route: cr.Path,        // the route's own string, not a request buffer
		TTL:   time.Duration(d.TTLSeconds) * time.Second,
		Stale: time.Duration(d.StaleSeconds) * time.Second,
		Tags:  keyTags(sc, d.Tags),
		Fill: func(context.Context) (*cache.Entry, error) {
			return s.fillFromHandler(leaderCtx)
		},
		PrepareRefresh: func() func(context.Context) (*cache.Entry, error) {
			return s.prepareRefresh(c)
		},
	}
	// The fill runs on this request's context in another goroutine, so
	// this request must wait for it whatever happens: never cancelled.
	res, err := cc.Get(context.WithoutCancel(c.UserContext()), r)
	if err != nil {
		return err
	}
	if res.Leader {
		setCacheHeaders(c, res.Event, 0)
		if res.Entry.Status == fiber.StatusOK {
			setEntryHeaders(c, res.Entry, sc.private)
			if notModified(c, res.Entry) {
				c.Response().ResetBody()
			}
		}
		return nil
	}
	writeEntry(c, res, sc.private)
	return nil
}

// decideKey asks the cache policy about the request canonicalised in sc
// and, when the answer is a lookup the host accepts, writes the request's
// cache key to sc.key and returns true. Reads only are looked up; a
// decision without a key or a lifetime, or a per-caller entry for no
// caller, bypasses the cache.
func (s *Server) decideKey(c *fiber.Ctx, cr *compiledRoute, sc *cacheScratch) bool {
	cacheRequest(c, cr, sc)
	setPolicyHeaders(c, s.decideCache(c.UserContext(), sc))
	d := &sc.dec
	if d.Action != abi.CacheLookup || d.Key == "" || d.TTLSeconds == 0 ||
		(sc.req.Method != fiber.MethodGet && sc.req.Method != fiber.MethodHead) {
		return false
	}
	k, ok := requestKey(cr, sc)
	if !ok {
		return false
	}
	sc.private = k.User != ""
	sc.key = s.deps.Cache.AppendRequestKey(sc.key[:0], k)
	return true
}

// keyTags is the tags an entry of the request in sc is stored under: its
// key tag (cache.KeyTag of the canonical request, which a purge by key
// names), then the policy's tags, copied out of borrowed memory.
func keyTags(sc *cacheScratch, tags []string) []string {
	out := make([]string, 0, 1+len(tags))
	out = append(out, cache.KeyTag(canonicalRequest(sc.path, sc.query)))
	for _, t := range tags {
		out = append(out, strings.Clone(t))
	}
	return out
}

// canonicalRequest is the canonical path, then "?" and the canonical
// query when there is one.
func canonicalRequest(path, query []byte) string {
	if len(query) == 0 {
		return string(path)
	}
	return string(path) + "?" + string(query)
}

// cloneStrings copies ss and its strings out of borrowed memory.
func cloneStrings(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.Clone(s)
	}
	return out
}

// writeEntry answers with a cached entry, 304 without a body when the
// request's If-None-Match names its entity tag. private says the entry is
// the caller's own.
func writeEntry(c *fiber.Ctx, res cache.Result, private bool) {
	e := res.Entry
	c.Status(e.Status)
	if e.ContentType != "" {
		c.Response().Header.SetContentType(e.ContentType)
	}
	setCacheHeaders(c, res.Event, res.Age)
	if e.Status != fiber.StatusOK {
		c.Response().Header.SetCanonical(headerCacheControl, ccNoStore)
		c.Response().SetBodyRaw(e.Body)
		return
	}
	setEntryHeaders(c, e, private)
	if !notModified(c, e) {
		c.Response().SetBodyRaw(e.Body)
	}
}

// cacheBypass serves the request from the handler and, for a successful
// write, purges the decision's tags.
func (s *Server) cacheBypass(c *fiber.Ctx, method, route string, tags []string, perUser bool) error {
	s.deps.Cache.Event(route, cache.TierNone, cache.EventBypass)
	setUncachedHeaders(c, perUser || (method != fiber.MethodGet && method != fiber.MethodHead))
	err := c.Next()
	if len(tags) > 0 && method != fiber.MethodGet && method != fiber.MethodHead && err == nil {
		if st := c.Response().StatusCode(); st >= 200 && st < 300 {
			s.deps.Cache.Purge(c.UserContext(), cloneStrings(tags)...)
		}
	}
	setCacheHeaders(c, cache.EventBypass, -1)
	return err
}

// fillFromHandler runs the rest of the chain on the leader's request and
// captures its response (errors rendered as the error handler would).
func (s *Server) fillFromHandler(c *fiber.Ctx) (*cache.Entry, error) {
	if err := c.Next(); err != nil {
		if herr := s.handleError(c, err); herr != nil {
			return nil, herr
		}
	}
	return captureResponse(&c.Response().Header, c.Response().StatusCode(), c.Response().Body()), nil
}

func captureResponse(h *fasthttp.ResponseHeader, status int, body []byte) *cache.Entry {
	return &cache.Entry{
		Status:      status,
		ContentType: string(h.ContentType()),
		Body:        append([]byte(nil), body...),
	}
}

// prepareRefresh copies what a background refresh needs from the request:
// the refresh replays it as an internal sub-request through the whole
// application (authentication included), marked so that it goes straight
// to the handler.
func (s *Server) prepareRefresh(c *fiber.Ctx) func(context.Context) (*cache.Entry, error) {
	req := new(fasthttp.Request)
	c.Request().CopyTo(req)
	addr := c.Context().RemoteAddr()
	return func(context.Context) (*cache.Entry, error) {
		var rc fasthttp.RequestCtx
		rc.Init(req, addr, nil)
		rc.SetUserValue(cacheRefreshKey{}, true)
		s.handler(&rc)
		return captureResponse(&rc.Response.Header, rc.Response.StatusCode(), rc.Response.Body()), nil
	}
}
