package rules

import (
	"strings"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, cfg, want string
	}{
		{"unknown field", `{"rules":[{"route":"/a","ttl":5}]}`, "unknown field"},
		{"no ttl", `{"rules":[{"route":"/a","scope":"global"}]}`, "ttl_s"},
		{"bad scope", `{"rules":[{"route":"/a","ttl_s":5,"scope":"team"}]}`, "scope"},
		{"missing scope", `{"rules":[{"route":"/a","ttl_s":5}]}`, "scope"},
		{"lookup of a write", `{"rules":[{"route":"/a","method":"POST","ttl_s":5,"scope":"global"}]}`, "GET"},
		{"unknown placeholder", `{"rules":[{"route":"/a/:id","ttl_s":5,"scope":"global","tags":["x:{uid}"]}]}`, "{uid}"},
		{"duplicate", `{"rules":[{"route":"/a","ttl_s":5,"scope":"global"},{"route":"/a","ttl_s":6,"scope":"global"}]}`, "duplicate"},
		{"purge without tags", `{"rules":[{"route":"/a","method":"PUT","action":"purge"}]}`, "tags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.cfg))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestCanonicalQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""}, {"a=1", "a=1"}, {"b=2&a=1", "a=1&b=2"}, {"a=1&&b=2", "a=1&b=2"}, {"a=1&b=2", "a=1&b=2"},
	}
	for _, tt := range tests {
		if got := CanonicalQuery(tt.in); got != tt.want {
			t.Errorf("CanonicalQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzDecide: for any request the decision is well formed and a
// user-scoped key contains the user.
func FuzzDecide(f *testing.F) {
	p, err := Parse(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("GET", "/api/users/:id/reputation", "/api/users/42/reputation", "", "42")
	f.Add("GET", "/api/users/:id/matches", "/api/users//matches", "b=1&a=2&&", "7")
	f.Add("PUT", "/api/users/:id/location", "/api", "", "")
	f.Add("GET", "/api/challenges/:id", "/api/challenges/1/2/3", "x", "1")
	f.Fuzz(func(t *testing.T, method, route, path, query, user string) {
		d := p.Decide(&abi.CacheRequest{Method: method, Route: route, Path: path, Query: query, User: user})
		if d.Action == abi.CacheLookup {
			if d.Key == "" || d.TTLSeconds == 0 {
				t.Fatalf("lookup without key or ttl: %+v", d)
			}
			if d.Scope == abi.ScopeUser && (user == "" || !strings.HasPrefix(d.Key, "u="+user+"|")) {
				t.Fatalf("user-scoped key %q does not start with the user %q", d.Key, user)
			}
			if method != "GET" {
				t.Fatalf("%s looked up", method)
			}
		}
		for _, tag := range d.Tags {
			if tag == "" || strings.ContainsAny(tag, "{}\n\r") {
				t.Fatalf("bad tag %q", tag)
			}
		}
		_ = CanonicalQuery(query)
	})
}

func BenchmarkDecide(b *testing.B) {
	p, _ := Parse(nil)
	req := abi.CacheRequest{Method: "GET", Route: "/api/users/:id/matches", Path: "/api/users/42/matches", Query: "radius_km=10", User: "42"}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Decide(&req)
	}
}
