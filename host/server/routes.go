package server

import (
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Access says who may see a route's response. The host derives the cache
// key's scope from it, whatever the cache policy returns (docs/cache.md).
type Access uint8

const (
	// Public: the same response for every caller, anonymous included; no
	// authentication. Entries are shared when the policy says global, per
	// caller when it says user (anonymous callers then bypass the cache).
	Public Access = iota
	// Caller: the response depends on the authenticated caller. The
	// bearer token is checked before the cache (401 without one) and the
	// cache key always carries the caller's id, whatever the policy's
	// scope, so an entry is only ever served to the caller whose request
	// produced it.
	Caller
	// Owner: the caller's own resource, named by the route's :id. 401
	// without a token and 403 when :id is someone else, both answered
	// before the cache; the key carries the caller's id (which is :id).
	Owner
)

func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Caller:
		return "caller"
	case Owner:
		return "owner"
	}
	return "access(" + strconv.Itoa(int(a)) + ")"
}

// apiRoute declares one /api route: who may see its response, how its
// parameters are canonicalised and whether the cache is in its chain.
type apiRoute struct {
	Method string
	Path   string // the route template
	Access Access
	// IDs are the path parameters that are user, challenge or other
	// numeric ids: one positive decimal integer of at most 20 digits,
	// leading zeros ignored (01 is 1); anything else (a sign, spaces,
	// hex, percent-encoding, 0) is answered 400 invalid_<name>. Tokens
	// are opaque path parameters (chat session ids), used as they are
	// and at most maxTokenParam bytes long. Every parameter of Path is
	// one or the other.
	IDs, Tokens []string
	// Query lists the query parameters the handler reads. The cache
	// policy and the cache key see only these, sorted by name, each
	// once (its first value, as the handler reads it) and only when not
	// empty; any other parameter is ignored for the key.
	Query []string
	// Cache puts the cache middleware in the route's chain: reads are
	// looked up, and a successful write purges the tags the policy names.
	Cache bool
}

// maxTokenParam bounds an opaque path parameter (a chat session id is 32
// hex digits).
const maxTokenParam = 128

// Route templates of the chat API.
const (
	routeChatSessions = "/api/chat/sessions"
	routeChatMessages = "/api/chat/sessions/:id/messages"
	routeChatCost     = "/api/chat/sessions/:id/cost"
)

// apiRoutes is the table of every /api route: the one place that says
// whether a route is public or depends on the caller. registerAPI refuses
// a route that is not in it, and a test checks that every /api route the
// server serves is here.
var apiRoutes = []apiRoute{
	{Method: fiber.MethodGet, Path: routeChallenges, Access: Public, Query: []string{"category", "cursor", "difficulty", "limit"}, Cache: true},
	{Method: fiber.MethodGet, Path: routeChallenge, Access: Public, IDs: []string{"id"}, Cache: true},
	{Method: fiber.MethodPost, Path: routeComplete, Access: Caller, IDs: []string{"id"}, Cache: true},
	{Method: fiber.MethodGet, Path: routeReputation, Access: Caller, IDs: []string{"id"}, Query: []string{"recent"}, Cache: true},
	{Method: fiber.MethodGet, Path: routeMatches, Access: Owner, IDs: []string{"id"}, Query: []string{"limit", "radius_km"}, Cache: true},
	{Method: fiber.MethodGet, Path: routeLocation, Access: Owner, IDs: []string{"id"}, Cache: true},
	{Method: fiber.MethodPut, Path: routeLocation, Access: Owner, IDs: []string{"id"}, Cache: true},
	{Method: fiber.MethodPost, Path: routeChatSessions, Access: Caller},
	{Method: fiber.MethodGet, Path: routeChatSessions, Access: Caller, Query: []string{"limit"}, Cache: true},
	{Method: fiber.MethodGet, Path: routeChatMessages, Access: Caller, Tokens: []string{"id"}, Query: []string{"after", "limit"}, Cache: true},
	{Method: fiber.MethodPost, Path: routeChatMessages, Access: Caller, Tokens: []string{"id"}},
	{Method: fiber.MethodGet, Path: routeChatCost, Access: Caller, Tokens: []string{"id"}, Cache: true},
	{Method: fiber.MethodGet, Path: pathAlerts, Access: Public},
}

// lookupAPIRoute returns the table's entry for method and path.
func lookupAPIRoute(method, path string) (apiRoute, bool) {
	for _, r := range apiRoutes {
		if r.Method == method && r.Path == path {
			return r, true
		}
	}
	return apiRoute{}, false
}

// registerAPI registers the table's route method path with handler h. It
// panics when the route is not in apiRoutes: a route cannot be served
// without saying who may see it.
func (s *Server) registerAPI(method, path string, h fiber.Handler) {
	r, ok := lookupAPIRoute(method, path)
	if !ok {
		panic("server: " + method + " " + path + " is not declared in apiRoutes")
	}
	s.handleRoute(r, h)
}

// handleRoute registers r with its explicit chain: authentication for
// caller-dependent routes, then the gate (canonical parameters, owner
// check, cache), then h.
func (s *Server) handleRoute(r apiRoute, h fiber.Handler) {
	cr := compileRoute(r)
	chain := make([]fiber.Handler, 0, 3)
	if r.Access != Public {
		chain = append(chain, s.requireAuth)
	}
	chain = append(chain, s.gate(cr), h)
	if r.Method == fiber.MethodGet {
		s.app.Get(r.Path, chain...) // and HEAD
		return
	}
	s.app.Add(r.Method, r.Path, chain...)
}

// segment is one part of a compiled template: a constant or a parameter.
type segment struct {
	text  string // the constant, or the parameter's name
	param bool
	id    bool // the parameter is an id (else a token)
}

// compiledRoute is an apiRoute ready for the gate.
type compiledRoute struct {
	apiRoute
	segs  []segment
	query []string // sorted
	owner int      // index of the "id" parameter among the ids, for Owner
}

// compileRoute splits r's template into constants and parameters. It
// panics on a template the gate cannot canonicalise (an undeclared
// parameter, an optional or wildcard one).
func compileRoute(r apiRoute) *compiledRoute {
	cr := &compiledRoute{apiRoute: r, owner: -1}
	cr.query = append([]string(nil), r.Query...)
	sortStrings(cr.query)
	nIDs := 0
	for i, part := range strings.Split(r.Path, "/") {
		if i > 0 {
			cr.addConst("/")
		}
		if !strings.HasPrefix(part, ":") {
			if strings.ContainsAny(part, "*+?") {
				panic("server: route " + r.Path + ": wildcards are not supported")
			}
			cr.addConst(part)
			continue
		}
		name := part[1:]
		switch {
		case contains(r.IDs, name):
			if name == "id" {
				cr.owner = nIDs
			}
			nIDs++
			cr.segs = append(cr.segs, segment{text: name, param: true, id: true})
		case contains(r.Tokens, name):
			cr.segs = append(cr.segs, segment{text: name, param: true})
		default:
			panic("server: route " + r.Path + ": parameter " + name + " is neither an id nor a token")
		}
	}
	if r.Access == Owner && cr.owner < 0 {
		panic("server: owner route " + r.Path + " has no :id")
	}
	if nIDs > len(cacheScratch{}.ids) {
		panic("server: route " + r.Path + ": too many ids")
	}
	return cr
}

func (cr *compiledRoute) addConst(s string) {
	if n := len(cr.segs); n > 0 && !cr.segs[n-1].param {
		cr.segs[n-1].text += s
		return
	}
	if s != "" {
		cr.segs = append(cr.segs, segment{text: s})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func sortStrings(ss []string) {
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && ss[j] < ss[j-1]; j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

// parseID parses an id parameter: decimal digits only, at most 20 of
// them, leading zeros ignored, value from 1 to 2^63-1.
func parseID(s string) (int64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63-1 {
			return 0, false
		}
	}
	if n == 0 {
		return 0, false
	}
	return int64(n), true
}

// canonicalise fills sc.path with the canonical path of the request (the
// template with each parameter in its canonical spelling), sc.query with
// its canonical query and sc.ids with its ids. A malformed parameter is
// a 400 naming it.
func (cr *compiledRoute) canonicalise(c *fiber.Ctx, sc *cacheScratch) error {
	sc.path = sc.path[:0]
	nIDs := 0
	for _, sg := range cr.segs {
		if !sg.param {
			sc.path = append(sc.path, sg.text...)
			continue
		}
		v := c.Params(sg.text)
		if sg.id {
			id, ok := parseID(v)
			if !ok {
				return badRequest("invalid_"+sg.text, sg.text+": must be a positive integer")
			}
			sc.ids[nIDs] = id
			nIDs++
			sc.path = strconv.AppendInt(sc.path, id, 10)
			continue
		}
		if v == "" || len(v) > maxTokenParam {
			return badRequest("invalid_"+sg.text, sg.text+": must be 1 to "+strconv.Itoa(maxTokenParam)+" characters")
		}
		sc.path = append(sc.path, v...)
	}
	sc.query = sc.query[:0]
	if len(cr.query) > 0 {
		args := c.Request().URI().QueryArgs()
		for _, name := range cr.query {
			v := args.Peek(name)
			if len(v) == 0 {
				continue
			}
			if len(sc.query) > 0 {
				sc.query = append(sc.query, '&')
			}
			sc.query = append(sc.query, name...)
			sc.query = append(sc.query, '=')
			sc.query = appendQueryEscape(sc.query, v)
		}
	}
	return nil
}

// appendQueryEscape appends v percent-encoded: every byte but the
// unreserved ones (RFC 3986) as %XX.
func appendQueryEscape(b, v []byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	for _, c := range v {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

// gate is the per-route middleware after authentication: it
// canonicalises the parameters (400 for a malformed one), answers 403 on
// an owner route that is not the caller's, and then, for a route with
// Cache set and a cache configured, serves the request through the cache
// with a key the host builds from the caller and the canonical request.
func (s *Server) gate(cr *compiledRoute) fiber.Handler {
	cached := cr.Cache && s.deps.Cache != nil && s.deps.CachePolicy != nil
	return func(c *fiber.Ctx) error {
		sc := cacheScratchPool.Get().(*cacheScratch)
		defer releaseScratch(sc)
		if err := cr.canonicalise(c, sc); err != nil {
			return err
		}
		me, authed := userID(c)
		if cr.Access != Public && !authed {
			return unauthorized("missing bearer token")
		}
		if cr.Access == Owner && sc.ids[cr.owner] != me {
			return forbidden("not your resource")
		}
		if !cached {
			setUncachedHeaders(c, cr.Access != Public || cr.Method != fiber.MethodGet)
			return c.Next()
		}
		if c.Context().UserValue(cacheRefreshKey{}) != nil {
			return c.Next()
		}
		sc.user = sc.user[:0]
		if authed {
			sc.user = strconv.AppendInt(sc.user, me, 10)
		}
		return s.serveCached(c, cr, sc)
	}
}

// requestKey is the cache key's parts for the request in sc under the
// decision in sc.dec: the caller is always part of it on a route that is
// not public, whatever the decision's scope.
func requestKey(cr *compiledRoute, sc *cacheScratch) (cache.RequestKey, bool) {
	user := utils.UnsafeString(sc.user)
	if cr.Access == Public && sc.dec.Scope == abi.ScopeGlobal {
		user = ""
	} else if user == "" {
		return cache.RequestKey{}, false // per-caller entry for no caller
	}
	return cache.RequestKey{
		User:      user,
		Route:     cr.Path,
		Path:      utils.UnsafeString(sc.path),
		Query:     utils.UnsafeString(sc.query),
		PolicyKey: sc.dec.Key,
	}, true
}
