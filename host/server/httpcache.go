package server

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/cache"
)

// HTTP caching: what the cache decided, said in the headers proxies and
// browsers read (docs/cache.md, "HTTP caching").
var (
	headerCacheControl = []byte("Cache-Control")
	headerETag         = []byte("Etag") // fasthttp's normalised spelling, which Peek finds
	headerVary         = []byte("Vary")
	headerIfNoneMatch  = []byte("If-None-Match")
	varyAuthorization  = []byte("Authorization")
	ccNoStore          = []byte("no-store")
	ccNoCache          = []byte("no-cache")
)

// setEntryHeaders sets the HTTP caching headers of an answer from the
// stored entry e: Cache-Control public (a shared entry) or private (an
// entry keyed by the caller), with the decision's TTL as max-age and its
// stale window as stale-while-revalidate; the entry's ETag; Vary:
// Authorization on the caller's own answers. Age is set with X-Cache
// (setCacheHeaders). It allocates nothing.
func setEntryHeaders(c *fiber.Ctx, e *cache.Entry, private bool) {
	h := &c.Response().Header
	var buf [80]byte
	b := buf[:0]
	if private {
		b = append(b, "private, max-age="...)
	} else {
		b = append(b, "public, max-age="...)
	}
	b = strconv.AppendInt(b, int64(e.TTL/time.Second), 10)
	if e.Stale >= time.Second {
		b = append(b, ", stale-while-revalidate="...)
		b = strconv.AppendInt(b, int64(e.Stale/time.Second), 10)
	}
	h.SetCanonical(headerCacheControl, b)
	if e.ETag != "" {
		h.SetCanonical(headerETag, utils.UnsafeBytes(e.ETag))
	}
	if private {
		h.SetCanonical(headerVary, varyAuthorization)
	}
}

// setUncachedHeaders marks an answer the cache does not keep: no-store
// (and Vary: Authorization) when it is the caller's own or a write,
// no-cache on a public read, so that no proxy serves it without asking.
func setUncachedHeaders(c *fiber.Ctx, perUser bool) {
	h := &c.Response().Header
	if perUser {
		h.SetCanonical(headerCacheControl, ccNoStore)
		h.SetCanonical(headerVary, varyAuthorization)
		return
	}
	h.SetCanonical(headerCacheControl, ccNoCache)
}

// notModified answers 304 when the request's If-None-Match names e's
// entity tag, and reports whether it did. The caller leaves the body out.
func notModified(c *fiber.Ctx, e *cache.Entry) bool {
	if e.ETag == "" || !etagMatch(c.Request().Header.PeekBytes(headerIfNoneMatch), e.ETag) {
		return false
	}
	c.Response().SetStatusCode(fiber.StatusNotModified)
	return true
}

// etagMatch reports whether an If-None-Match field value names tag (a
// strong tag, quotes included) under the weak comparison of RFC 9110
// 13.1.2: "*", or a comma-separated list of entity tags, W/ prefixes
// ignored. A malformed list matches nothing past the malformed element,
// so the full answer is sent. It allocates nothing.
func etagMatch(field []byte, tag string) bool {
	for {
		for len(field) > 0 && (field[0] == ' ' || field[0] == '\t' || field[0] == ',') {
			field = field[1:]
		}
		if len(field) == 0 {
			return false
		}
		if field[0] == '*' {
			return true
		}
		if len(field) >= 2 && field[0] == 'W' && field[1] == '/' {
			field = field[2:]
		}
		if len(field) == 0 || field[0] != '"' {
			return false
		}
		end := bytes.IndexByte(field[1:], '"')
		if end < 0 {
			return false
		}
		if string(field[:end+2]) == tag {
			return true
		}
		field = field[end+2:]
	}
}

// MaxPurgeItems bounds the tags and keys of one purge request together;
// maxPurgeBody bounds its body.
const (
	MaxPurgeItems = 100
	maxPurgeBody  = 64 << 10
)

// purgeKeyTag marks the internal sub-request that resolves a purge key
// (a URL) into its key tag instead of purging it; the PURGE handler
// leaves the tag in the request's user value under this key.
type purgeKeyTag struct{}

// purgeRequest is the body of POST /admin/cache/purge.
type purgeRequest struct {
	Tags []string `json:"tags"`
	Keys []string `json:"keys"`
}

// purgeAnswer is the answer of a purge (POST /admin/cache/purge, PURGE).
type purgeAnswer struct {
	Tags []string `json:"tags"`
	Keys []string `json:"keys"`
	// Redis: Redis applied the purge now and broadcast it to every
	// instance; RedisEntries it dropped; Instances heard the broadcast
	// (this one included). Pending: Redis is configured but away, the
	// purge is applied here and replayed when Redis is back.
	Redis        bool  `json:"redis"`
	RedisEntries int64 `json:"redis_entries"`
	Instances    int64 `json:"instances"`
	Pending      bool  `json:"pending"`
}

// cacheAdminRoutes registers the purge API: POST /admin/cache/purge (in
// the admin group g) and the PURGE method on every cached read route,
// both behind the admin token.
func (s *Server) cacheAdminRoutes(g fiber.Router) {
	g.Post("/cache/purge", s.adminCachePurge)
	for _, r := range apiRoutes {
		if r.Cache && r.Method == fiber.MethodGet {
			s.app.Add(MethodPurge, r.Path, s.requireAdmin, s.purgeURL(compileRoute(r)))
		}
	}
}

// MethodPurge is the HTTP method that purges one URL's entries.
const MethodPurge = "PURGE"

// purgeURL answers PURGE <url>: the entries of the URL's canonical
// request are dropped for every caller on every instance. As an internal
// sub-request marked with purgeKeyTag it only resolves the key tag.
func (s *Server) purgeURL(cr *compiledRoute) fiber.Handler {
	return func(c *fiber.Ctx) error {
		sc := cacheScratchPool.Get().(*cacheScratch)
		defer releaseScratch(sc)
		if err := cr.canonicalise(c, sc); err != nil {
			return err
		}
		tag := cache.KeyTag(canonicalRequest(sc.path, sc.query))
		if p, ok := c.Context().UserValue(purgeKeyTag{}).(*string); ok {
			*p = tag
			return c.SendStatus(fiber.StatusNoContent)
		}
		res := s.deps.Cache.PurgeReport(c.UserContext(), tag)
		return c.JSON(answerOf(res, nil, []string{canonicalRequest(sc.path, sc.query)}))
	}
}

func answerOf(res cache.PurgeResult, tags, keys []string) purgeAnswer {
	if tags == nil {
		tags = []string{}
	}
	if keys == nil {
		keys = []string{}
	}
	return purgeAnswer{Tags: tags, Keys: keys, Redis: res.Redis, RedisEntries: res.RedisEntries,
		Instances: res.Instances, Pending: res.Pending}
}

// adminCachePurge answers POST /admin/cache/purge {"tags": [...], "keys":
// [...]}: every entry carrying one of the tags, and every entry of each
// key (a cached read's URL path and query, any spelling the route
// accepts), is dropped in both tiers of every instance. Nothing is purged
// unless the whole request is valid.
func (s *Server) adminCachePurge(c *fiber.Ctx) error {
	body := c.Body()
	if len(body) > maxPurgeBody {
		return apierr.Newf(apierr.BodyTooLarge, "the purge body is over "+strconv.Itoa(maxPurgeBody)+" bytes")
	}
	var req purgeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return apierr.Newf(apierr.InvalidBody, `the body must be {"tags": [...], "keys": [...]}`)
	}
	n := len(req.Tags) + len(req.Keys)
	switch {
	case n == 0:
		return apierr.Field("tags", "name at least one tag or key")
	case n > MaxPurgeItems:
		return apierr.Newf(apierr.OverLimit, "at most "+strconv.Itoa(MaxPurgeItems)+" tags and keys per purge")
	}
	tags := make([]string, 0, n)
	for i, t := range req.Tags {
		if !cache.ValidTag(t) {
			return apierr.Field("tags", "tags["+strconv.Itoa(i)+"]: want 1 to 512 bytes without line breaks")
		}
		tags = append(tags, t)
	}
	for i, k := range req.Keys {
		tag, err := s.resolveKey(c, k)
		if err != nil {
			return apierr.Field("keys", "keys["+strconv.Itoa(i)+"]: "+err.Message)
		}
		tags = append(tags, tag)
	}
	res := s.deps.Cache.PurgeReport(c.UserContext(), tags...)
	return c.JSON(answerOf(res, req.Tags, req.Keys))
}

// resolveKey turns a purge key (a URL path with its query) into its key
// tag by routing it as an internal PURGE sub-request, so that a key is
// read exactly as a request to the same URL would be: same routes, same
// canonical form.
func (s *Server) resolveKey(c *fiber.Ctx, key string) (string, *APIError) {
	if key == "" || key[0] != '/' || len(key) > 2048 || bytes.ContainsAny([]byte(key), " \t\r\n#") {
		return "", apierr.Newf(apierr.Invalid, "want a URL path starting with /, e.g. /api/challenges?limit=5")
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(MethodPurge)
	req.SetRequestURI(key)
	req.Header.SetBytesV(fiber.HeaderAuthorization, c.Request().Header.Peek(fiber.HeaderAuthorization))
	var rc fasthttp.RequestCtx
	rc.Init(req, c.Context().RemoteAddr(), nil)
	var tag string
	rc.SetUserValue(purgeKeyTag{}, &tag)
	s.handler(&rc)
	if tag != "" {
		return tag, nil
	}
	var body apierr.JSON
	if json.Unmarshal(rc.Response.Body(), &body) == nil && body.Error.Message != "" && rc.Response.StatusCode() == fiber.StatusBadRequest {
		return "", apierr.Newf(apierr.Invalid, body.Error.Message)
	}
	return "", apierr.Newf(apierr.Invalid, "not a cached read route")
}

// knownMethod reports whether the server routes method m: anything else
// is answered 405 in the project's JSON shape before the router (whose
// own answer to an unknown method is plain text).
func knownMethod(m []byte) bool {
	for _, k := range requestMethods {
		if string(m) == k {
			return true
		}
	}
	return false
}

// requestMethods are the methods the router knows: Fiber's and PURGE.
var requestMethods = append(append([]string(nil), fiber.DefaultMethods...), MethodPurge)

// guardMethods answers a request whose method the router does not know
// (a JSON 405), and passes every other to next.
func guardMethods(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(rc *fasthttp.RequestCtx) {
		if knownMethod(rc.Method()) {
			next(rc)
			return
		}
		ae := apierr.New(apierr.MethodNotAllowed)
		b, _ := json.Marshal(ae.JSONBody())
		rc.Response.Reset()
		rc.SetStatusCode(ae.Status)
		rc.SetContentType(fiber.MIMEApplicationJSON)
		rc.Response.Header.SetCanonical(headerCacheControl, ccNoStore)
		rc.SetBody(b)
	}
}
