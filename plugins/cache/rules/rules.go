// Package rules is the default cache policy's logic: configuration rules
// (route template → action, TTL, scope, stale window, tags) and the
// decision for one request. It is plain Go so that it is tested natively;
// the policy module (plugins/cache) wraps it.
package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	byRoute map[string]map[string]*compiled // method → route → rule
}

type compiled struct {
	Rule
	purge  bool
	scope  abi.Scope
	params []string // route parameter names by segment index ("" for a constant)
	tags   []tagTemplate
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
	p := &Policy{byRoute: make(map[string]map[string]*compiled)}
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
		if p.byRoute[c.Method] == nil {
			p.byRoute[c.Method] = make(map[string]*compiled)
		}
		if _, dup := p.byRoute[c.Method][r.Route]; dup {
			return nil, fmt.Errorf("cache policy: rule %d: duplicate rule for %s %s", i, c.Method, r.Route)
		}
		p.byRoute[c.Method][r.Route] = c
	}
	return p, nil
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

var errNoValue = errors.New("placeholder without a usable value")

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

// Decide answers one request. Anything without a rule is bypassed; a
// user-scoped rule without a user is bypassed; a user-scoped key always
// contains the user.
func (p *Policy) Decide(req *abi.CacheRequest) abi.CacheDecision {
	r := p.byRoute[req.Method][req.Route]
	if r == nil {
		return abi.CacheDecision{Action: abi.CacheBypass}
	}
	params := req.Path
	if r.purge {
		d := abi.CacheDecision{Action: abi.CacheBypass}
		for _, t := range r.tags {
			if s, err := t.expand(req.User, r.params, params); err == nil {
				d.Tags = append(d.Tags, s)
			}
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
	var key strings.Builder
	key.Grow(len(req.Path) + len(req.Query) + len(req.User) + 8)
	if r.scope == abi.ScopeUser {
		key.WriteString("u=")
		key.WriteString(req.User)
		key.WriteByte('|')
	}
	key.WriteString(req.Path)
	if !r.IgnoreQuery && req.Query != "" {
		key.WriteByte('?')
		key.WriteString(CanonicalQuery(req.Query))
	}
	d.Key = key.String()
	d.Tags = make([]string, 0, len(r.tags))
	for _, t := range r.tags {
		s, err := t.expand(req.User, r.params, params)
		if err != nil {
			// A tag that cannot be named could never be purged: do not cache.
			return abi.CacheDecision{Action: abi.CacheBypass}
		}
		d.Tags = append(d.Tags, s)
	}
	return d
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

func (t tagTemplate) expand(user string, names []string, path string) (string, error) {
	if len(t.parts) == 1 {
		return t.parts[0], nil
	}
	n := 0
	var vals [4]string
	for i := 1; i < len(t.parts); i += 2 {
		v := ""
		if t.parts[i] == "user" {
			v = user
		} else if j := slices.Index(names, t.parts[i]); j >= 0 {
			v = segment(path, j)
		}
		if !safeValue(v) {
			return "", errNoValue
		}
		if i/2 < len(vals) {
			vals[i/2] = v
		}
		n += len(v) + len(t.parts[i-1])
	}
	var b strings.Builder
	b.Grow(n + len(t.parts[len(t.parts)-1]))
	for i, part := range t.parts {
		if i%2 == 0 {
			b.WriteString(part)
		} else if i/2 < len(vals) {
			b.WriteString(vals[i/2])
		} else if part == "user" {
			b.WriteString(user)
		} else {
			b.WriteString(segment(path, slices.Index(names, part)))
		}
	}
	return b.String(), nil
}

// CanonicalQuery orders a raw query's &-separated pairs so that the same
// parameters in another order share a key. Empty pairs are dropped.
func CanonicalQuery(q string) string {
	if strings.IndexByte(q, '&') < 0 {
		return q
	}
	pairs := strings.Split(q, "&")
	pairs = slices.DeleteFunc(pairs, func(s string) bool { return s == "" })
	if slices.IsSorted(pairs) {
		return strings.Join(pairs, "&")
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "&")
}
