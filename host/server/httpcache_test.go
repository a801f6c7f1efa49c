package server

import (
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/cache"
)

func TestETagMatch(t *testing.T) {
	const tag = `"abc"`
	for _, tc := range []struct {
		field string
		want  bool
	}{
		{`"abc"`, true},
		{`W/"abc"`, true},
		{`"x", "abc"`, true},
		{` "x" ,W/"abc" `, true},
		{`*`, true},
		{``, false},
		{`"abcd"`, false},
		{`"ab"`, false},
		{`abc`, false},
		{`"abc`, false},
		{`W/abc`, false},
		{`"x" "abc"`, true}, // lenient: a missing comma still names the tag
		{`junk, "abc"`, false},
		{`w/"abc"`, false}, // the prefix is case-sensitive
	} {
		if got := etagMatch([]byte(tc.field), tag); got != tc.want {
			t.Errorf("etagMatch(%q) = %v, want %v", tc.field, got, tc.want)
		}
	}
}

// FuzzETagMatch: any If-None-Match value is read without a panic, and a
// match is only ever found for "*" or a field that holds the tag itself.
func FuzzETagMatch(f *testing.F) {
	for _, s := range []string{`"abc"`, `W/"abc", "d"`, `*`, `"`, `W/`, `,,,`, "\"a\x00\""} {
		f.Add(s, `"abc"`)
	}
	f.Fuzz(func(t *testing.T, field, tag string) {
		got := etagMatch([]byte(field), tag)
		if got && !strings.Contains(field, "*") && !strings.Contains(field, tag) {
			t.Fatalf("etagMatch(%q, %q) = true without the tag in the field", field, tag)
		}
		if cache.ETagOf("", []byte(field)) != cache.ETagOf("", []byte(field)) {
			t.Fatal("ETagOf is not deterministic")
		}
		strong := cache.ETagOf("t", []byte(field))
		if !etagMatch([]byte(`"x", `+strong), strong) || !etagMatch([]byte("W/"+strong), strong) {
			t.Fatalf("a list naming %s does not match it", strong)
		}
	})
}

// TestNotModifiedAllocatesNothing: a conditional hit answered 304 from
// the in-process tier allocates nothing, like a full hit.
func TestNotModifiedAllocatesNothing(t *testing.T) {
	w := newWingmanApp(t, cache.Config{}, cachePluginEngine(t))
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("GET")
	rc.Request.SetRequestURI("/api/challenges")
	w.s.handler(&rc)
	etag := append([]byte(nil), rc.Response.Header.Peek("ETag")...)
	if len(etag) == 0 {
		t.Fatalf("no ETag on the first answer: %s", rc.Response.Header.String())
	}
	rc.Request.Header.Set("If-None-Match", string(etag))
	serve := func() {
		rc.Response.Reset()
		w.s.handler(&rc)
		if rc.Response.StatusCode() != 304 || len(rc.Response.Body()) != 0 || !bytes.Equal(rc.Response.Header.Peek("ETag"), etag) {
			panic("want 304 without a body")
		}
	}
	serve()
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(500, serve); n != 0 {
		t.Errorf("%v allocations per 304 hit, want 0", n)
	}
}
