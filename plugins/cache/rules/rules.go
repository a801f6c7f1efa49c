// Package rules is the default cache policy's logic: configuration rules
// (route template → action, TTL, scope, stale window, tags) and the
// decision for one request. It is plain Go so that it is tested natively;
// the policy module (plugins/cache) wraps it.
package rules

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Rule is one entry of the configuration.
type Rule struct {
	// Route is the route template as the host reports it, e.g.
	// /api/users/:id/reputation.
	Route string `json:"route"`
	// Method is the HTTP method; default GET.
	Method string `json:"method,omitempty"`
	// Action is "lookup" (cache the response) or "purge" (a write: bypass,
	// and purge Tags once it succeeds). Default lookup.
	Action string `json:"action,omitempty"`
	// TTLSeconds is how long a response is fresh.
	TTLSeconds uint32 `json:"ttl_s,omitempty"`
	// Scope is "user" (one entry per requesting user) or "global".
	Scope string `json:"scope,omitempty"`
	// StaleSeconds is how long past TTL a stale copy may be served.
	StaleSeconds uint32 `json:"stale_s,omitempty"`
	// Tags are purge tags; {user} is the requesting user and {name} a
	// route parameter (:name).
	Tags []string `json:"tags,omitempty"`
	// IgnoreQuery leaves the query string out of the key.
	IgnoreQuery bool `json:"ignore_query,omitempty"`
}

// Config is the policy's configuration: the "config" value of the cache
// entry in policies/policies.json.
type Config struct {
	Rules []Rule `json:"rules"`
}

// Defaults reproduces the product's brief.
func Defaults() Config {
	return Config{Rules: []Rule{
		{Route: "/api/challenges", TTLSeconds: 1800, Scope: "global", StaleSeconds: 300, Tags: []string{"challenges"}},
		{Route: "/api/challenges/:id", TTLSeconds: 1800, Scope: "global", StaleSeconds: 300, Tags: []string{"challenges", "challenge:{id}"}},
		{Route: "/api/users/:id/reputation", TTLSeconds: 900, Scope: "user", StaleSeconds: 60, Tags: []string{"user:{id}"}},
		{Route: "/api/users/:id/matches", TTLSeconds: 300, Scope: "user", StaleSeconds: 30, Tags: []string{"user:{id}:location", "user:{id}:matches"}},
		{Route: "/api/users/:id/location", TTLSeconds: 3600, Scope: "user", Tags: []string{"user:{id}:location"}},
		{Route: "/api/challenges/:id/complete", Method: "POST", Action: "purge", Tags: []string{"user:{user}"}},
		{Route: "/api/users/:id/location", Method: "PUT", Action: "purge", Tags: []string{"user:{id}:location"}},
	}}
}

// Policy is a compiled configuration.
type Policy struct {
	// byLen holds the rules by the length of their route template: a
	// lookup indexes by the request's route length and compares the few
	// rules of that length. Inside a guest this is several times cheaper
	// than hashing the strings into a map.
	byLen [][]*compiled
}

type compiled struct {
	Rule
	purge  bool
	scope  abi.Scope
	params []string // route parameter names by segment index ("" for a constant)
	tags   []tagTemplate
	// literalTags is the tags when none has a placeholder: a decision
	// shares it instead of building the list.
	literalTags []string
}

// tagTemplate is a tag split into literal parts and placeholders.
type tagTemplate struct {
	parts []string // literal, placeholder, literal, ... (even: literal)
}

// Parse reads the configuration; empty input gives Defaults.
func Parse(b []byte) (*Policy, error) {
	cfg := Defaults()
	if len(strings.TrimSpace(string(b))) > 0 && string(b) != "null" {
		cfg = Config{}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("cache policy: config: %w", err)
		}
	}
	return Compile(cfg)
}

// Compile checks and compiles cfg.
func Compile(cfg Config) (*Policy, error) {
	p := &Policy{}
	for i, r := range cfg.Rules {
		c := &compiled{Rule: r}
		if c.Method == "" {
			c.Method = "GET"
		}
		c.Method = strings.ToUpper(c.Method)
		if !strings.HasPrefix(r.Route, "/") {
			return nil, fmt.Errorf("cache policy: rule %d: route %q must start with /", i, r.Route)
		}
		switch r.Action {
		case "", "lookup":
			if c.Method != "GET" {
				return nil, fmt.Errorf("cache policy: rule %d: only GET can be looked up", i)
			}
			if r.TTLSeconds == 0 {
				return nil, fmt.Errorf("cache policy: rule %d: ttl_s must be positive", i)
			}
		case "purge":
			c.purge = true
			if len(r.Tags) == 0 {
				return nil, fmt.Errorf("cache policy: rule %d: a purge rule needs tags", i)
			}
		default:
			return nil, fmt.Errorf("cache policy: rule %d: unknown action %q", i, r.Action)
		}
		switch r.Scope {
		case "user":
			c.scope = abi.ScopeUser
		case "global", "":
			if !c.purge && r.Scope == "" {
				return nil, fmt.Errorf("cache policy: rule %d: scope must be user or global", i)
			}
			c.scope = abi.ScopeGlobal
		default:
			return nil, fmt.Errorf("cache policy: rule %d: unknown scope %q", i, r.Scope)
		}
		for j, seg := range strings.Split(r.Route, "/") {
			name := ""
			if strings.HasPrefix(seg, ":") {
				name = strings.TrimRight(seg[1:], "?")
			}
			if j >= len(c.params) {
				c.params = append(c.params, name)
			}
		}
		for _, t := range r.Tags {
			tt, err := parseTag(t, c.params)
			if err != nil {
				return nil, fmt.Errorf("cache policy: rule %d: %w", i, err)
			}
			c.tags = append(c.tags, tt)
		}
		if len(c.tags) > 0 && !slices.ContainsFunc(c.tags, func(t tagTemplate) bool { return len(t.parts) > 1 }) {
			c.literalTags = slices.Clip(slices.Clone(r.Tags))
		}
		if p.find(c.Method, r.Route) != nil {
			return nil, fmt.Errorf("cache policy: rule %d: duplicate rule for %s %s", i, c.Method, r.Route)
		}
		for len(p.byLen) <= len(r.Route) {
			p.byLen = append(p.byLen, nil)
		}
		p.byLen[len(r.Route)] = append(p.byLen[len(r.Route)], c)
	}
	return p, nil
}

// find returns the rule for method and route, or nil.
func (p *Policy) find(method, route string) *compiled {
	if len(route) >= len(p.byLen) {
		return nil
	}
	for _, c := range p.byLen[len(route)] {
		if c.Route == route && c.Method == method {
			return c
		}
	}
	return nil
}

func parseTag(t string, params []string) (tagTemplate, error) {
	var tt tagTemplate
	rest := t
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			tt.parts = append(tt.parts, rest)
			return tt, nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return tt, fmt.Errorf("tag %q: unclosed {", t)
		}
		name := rest[i+1 : i+j]
		if name != "user" && !slices.Contains(params, name) {
			return tt, fmt.Errorf("tag %q: {%s} is neither {user} nor a route parameter", t, name)
		}
		tt.parts = append(tt.parts, rest[:i], name)
		rest = rest[i+j+1:]
	}
}

// safeValue reports whether a user id or path segment can go into a tag:
// not empty, at most 128 bytes, no braces, no control characters.
func safeValue(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// Scratch is memory a caller reuses across decisions: DecideInto builds
// keys and tags in it instead of allocating, which inside a guest costs
// far more than natively. The zero value is ready to use. A Scratch serves
// one caller at a time.
type Scratch struct {
	buf   []byte
	tags  []string
	pairs []string
}

// Decide answers one request with fresh memory: its decision's strings stay
// valid for as long as the caller keeps them (they may share memory with
// req's). Anything without a rule is bypassed; a user-scoped rule without a
// user is bypassed; a user-scoped key always contains the user.
func (p *Policy) Decide(req *abi.CacheRequest) abi.CacheDecision {
	return p.DecideInto(req, nil)
}

// DecideInto is Decide building the decision in s: the decision's key and
// tags may be views of s, valid until the next call with s. A nil s
// allocates.
func (p *Policy) DecideInto(req *abi.CacheRequest, s *Scratch) abi.CacheDecision {
	r := p.find(req.Method, req.Route)
	if r == nil {
		return abi.CacheDecision{Action: abi.CacheBypass}
	}
	if s == nil {
		s = new(Scratch)
	}
	s.buf, s.tags = s.buf[:0], s.tags[:0]
	if r.purge {
		d := abi.CacheDecision{Action: abi.CacheBypass}
		if r.literalTags != nil {
			d.Tags = r.literalTags
			return d
		}
		for _, t := range r.tags {
			if v, ok := s.expand(t, req.User, r.params, req.Path); ok {
				s.tags = append(s.tags, v)
			}
		}
		if len(s.tags) > 0 {
			d.Tags = s.tags
		}
		return d
	}
	if r.scope == abi.ScopeUser && req.User == "" {
		return abi.CacheDecision{Action: abi.CacheBypass}
	}
	d := abi.CacheDecision{
		Action:       abi.CacheLookup,
		TTLSeconds:   r.TTLSeconds,
		Scope:        r.scope,
		StaleSeconds: r.StaleSeconds,
	}
	query := !r.IgnoreQuery && req.Query != ""
	if r.scope != abi.ScopeUser && !query {
		d.Key = req.Path
	} else {
		start := len(s.buf)
		if r.scope == abi.ScopeUser {
			s.buf = append(s.buf, "u="...)
			s.buf = append(s.buf, req.User...)
			s.buf = append(s.buf, '|')
		}
		s.buf = append(s.buf, req.Path...)
		if query {
			s.buf = append(s.buf, '?')
			s.buf = s.appendCanonicalQuery(s.buf, req.Query)
		}
		d.Key = view(s.buf[start:])
	}
	if r.literalTags != nil {
		d.Tags = r.literalTags
		return d
	}
	for _, t := range r.tags {
		v, ok := s.expand(t, req.User, r.params, req.Path)
		if !ok {
			// A tag that cannot be named could never be purged: do not cache.
			return abi.CacheDecision{Action: abi.CacheBypass}
		}
		s.tags = append(s.tags, v)
	}
	d.Tags = s.tags
	return d
}

// view returns a string sharing b's bytes. b is never written again before
// the next decision resets the scratch: appends past its capacity move to
// a new array and leave the old one as it was.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// segment returns the path's segment number i (split on '/'), without
// allocating.
func segment(path string, i int) string {
	for ; i > 0; i-- {
		j := strings.IndexByte(path, '/')
		if j < 0 {
			return ""
		}
		path = path[j+1:]
	}
	if j := strings.IndexByte(path, '/'); j >= 0 {
		return path[:j]
	}
	return path
}

// expand appends the tag with its placeholders filled to s.buf and returns
// it, or false when a placeholder has no usable value.
func (s *Scratch) expand(t tagTemplate, user string, names []string, path string) (string, bool) {
	if len(t.parts) == 1 {
		return t.parts[0], true
	}
	start := len(s.buf)
	for i, part := range t.parts {
		if i%2 == 0 {
			s.buf = append(s.buf, part...)
			continue
		}
		v := user
		if part != "user" {
			v = ""
			if j := slices.Index(names, part); j >= 0 {
				v = segment(path, j)
			}
		}
		if !safeValue(v) {
			s.buf = s.buf[:start]
			return "", false
		}
		s.buf = append(s.buf, v...)
	}
	return view(s.buf[start:]), true
}

// CanonicalQuery orders a raw query's &-separated pairs so that the same
// parameters in another order share a key. Empty pairs are dropped.
func CanonicalQuery(q string) string {
	if strings.IndexByte(q, '&') < 0 {
		return q
	}
	var s Scratch
	return string(s.appendCanonicalQuery(nil, q))
}

// appendCanonicalQuery appends CanonicalQuery(q) to b, sorting in s.pairs.
func (s *Scratch) appendCanonicalQuery(b []byte, q string) []byte {
	if strings.IndexByte(q, '&') < 0 {
		return append(b, q...)
	}
	s.pairs = s.pairs[:0]
	for pair := range strings.SplitSeq(q, "&") {
		if pair != "" {
			s.pairs = append(s.pairs, pair)
		}
	}
	slices.Sort(s.pairs)
	for i, pair := range s.pairs {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, pair...)
	}
	return b
}
