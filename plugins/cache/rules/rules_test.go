package rules

import (
	"reflect"
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

// FuzzDecide: for any request the decision is well formed, a user-scoped
// key contains the user, and a decision built in a reused scratch equals
// one built in fresh memory (while the earlier one it followed is intact).
func FuzzDecide(f *testing.F) {
	p, err := Parse([]byte(`{"rules":[
		{"route":"/api/users/:id/reputation","ttl_s":900,"scope":"user","stale_s":60,"tags":["user:{id}"]},
		{"route":"/api/users/:id/matches","ttl_s":300,"scope":"user","tags":["user:{id}:location","user:{id}:matches","near"]},
		{"route":"/api/users/:id/location","ttl_s":3600,"scope":"user","tags":["user:{id}:location"]},
		{"route":"/api/challenges","ttl_s":1800,"scope":"global","tags":["challenges"]},
		{"route":"/api/challenges/:id","ttl_s":1800,"scope":"global","tags":["challenges","challenge:{id}"]},
		{"route":"/api/feed","ttl_s":60,"scope":"global","ignore_query":true},
		{"route":"/api/challenges/:id/complete","method":"POST","action":"purge","tags":["user:{user}","challenge:{id}"]},
		{"route":"/api/users/:id/location","method":"PUT","action":"purge","tags":["user:{id}:location"]},
		{"route":"/api/catalogue","method":"DELETE","action":"purge","tags":["challenges"]}]}`))
	if err != nil {
		f.Fatal(err)
	}
	var scratch Scratch
	var prev abi.CacheDecision
	var prevCopy abi.CacheDecision
	f.Add("GET", "/api/users/:id/reputation", "/api/users/42/reputation", "", "42")
	f.Add("GET", "/api/users/:id/matches", "/api/users//matches", "b=1&a=2&&", "7")
	f.Add("PUT", "/api/users/:id/location", "/api", "", "")
	f.Add("GET", "/api/challenges/:id", "/api/challenges/1/2/3", "x", "1")
	f.Fuzz(func(t *testing.T, method, route, path, query, user string) {
		req := abi.CacheRequest{Method: method, Route: route, Path: path, Query: query, User: user}
		d := p.Decide(&req)
		if !reflect.DeepEqual(prev, prevCopy) {
			t.Fatalf("a later decision changed an earlier one: %+v, was %+v", prev, prevCopy)
		}
		if in := p.DecideInto(&req, &scratch); !reflect.DeepEqual(in, d) {
			t.Fatalf("DecideInto = %+v, Decide = %+v", in, d)
		}
		prev = d
		prevCopy = abi.CacheDecision{Action: d.Action, Key: strings.Clone(d.Key), TTLSeconds: d.TTLSeconds, Scope: d.Scope, StaleSeconds: d.StaleSeconds}
		for _, tag := range d.Tags {
			prevCopy.Tags = append(prevCopy.Tags, strings.Clone(tag))
		}
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
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = p.Decide(&req)
		}
	})
	b.Run("scratch", func(b *testing.B) {
		var s Scratch
		b.ReportAllocs()
		for b.Loop() {
			_ = p.DecideInto(&req, &s)
		}
	})
}

// TestDecideIntoAllocates nothing once the scratch has grown, on every
// route of the defaults and with an unordered query.
func TestDecideIntoAllocatesNothing(t *testing.T) {
	p, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []abi.CacheRequest{
		{Method: "GET", Route: "/api/challenges", Path: "/api/challenges", User: "1"},
		{Method: "GET", Route: "/api/challenges/:id", Path: "/api/challenges/7", User: "1"},
		{Method: "GET", Route: "/api/users/:id/reputation", Path: "/api/users/42/reputation", User: "42"},
		{Method: "GET", Route: "/api/users/:id/matches", Path: "/api/users/42/matches", Query: "radius_km=10&limit=5&&", User: "42"},
		{Method: "POST", Route: "/api/challenges/:id/complete", Path: "/api/challenges/7/complete", User: "42"},
		{Method: "GET", Route: "/api/unknown", Path: "/api/unknown", User: "42"},
	}
	var s Scratch
	for _, r := range reqs {
		if d := p.DecideInto(&r, &s); !reflect.DeepEqual(d, p.Decide(&r)) {
			t.Fatalf("%s: scratch and fresh decisions differ", r.Route)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		for i := range reqs {
			_ = p.DecideInto(&reqs[i], &s)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per round of %d decisions, want 0", n, len(reqs))
	}
}
