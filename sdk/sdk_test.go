package sdk

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

func TestDispatchPanicBecomesError(t *testing.T) {
	HandleRoute(func(req RouteRequest) (RouteDecision, error) {
		var m map[string]int
		m["x"] = 1 // panics
		return RouteDecision{}, nil
	})
	defer HandleRoute(nil)
	_, err := CallRoute(RouteRequest{Message: "x"})
	if !errors.Is(err, ErrPolicy) || !bytes.Contains([]byte(err.Error()), []byte("panic in route handler")) {
		t.Fatalf("err = %v", err)
	}
}

func TestDispatchErrors(t *testing.T) {
	var d dispatcher
	tests := []struct {
		name string
		kind abi.Kind
		in   []byte
	}{
		{"unknown kind", 9, nil},
		{"no handler", abi.KindCompress, abi.AppendCompressRequest(nil, &CompressRequest{})},
		{"malformed", abi.KindCache, []byte{1, 2}},
	}
	HandleCache(func(CacheRequest) (CacheDecision, error) { return CacheDecision{}, nil })
	HandleCompress(nil)
	defer HandleCache(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := d.decide(tt.kind, tt.in)
			if len(out) == 0 || abi.Status(out[0]) != abi.StatusError {
				t.Fatalf("payload %q, want an error status", out)
			}
		})
	}
}

// TestCacheRequestStringsAreViews: a cache handler's request strings are
// valid only during the call; CallCache makes a retained view visibly
// wrong, while a clone survives and the returned decision is unaffected.
func TestCacheRequestStringsAreViews(t *testing.T) {
	var kept, cloned string
	HandleCache(func(req CacheRequest) (CacheDecision, error) {
		kept, cloned = req.Path, strings.Clone(req.Path)
		return CacheDecision{Action: CacheLookup, Key: req.Path}, nil
	})
	defer HandleCache(nil)
	d, err := CallCache(CacheRequest{Method: "GET", Route: "/r", Path: "/api/users/42"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Key != "/api/users/42" {
		t.Errorf("decision key = %q, want the path", d.Key)
	}
	if cloned != "/api/users/42" {
		t.Errorf("cloned = %q", cloned)
	}
	if kept == "/api/users/42" {
		t.Error("a retained view still reads the request after the call; it should be overwritten")
	}
}

// TestConfigure: the state comes from the init handler's configuration;
// before any init, from the defaults (a nil configuration), built once; a
// configuration the builder refuses fails init and keeps the state.
func TestConfigure(t *testing.T) {
	var built []string
	c := Configure(func(config []byte) (string, error) {
		built = append(built, string(config))
		if string(config) == "bad" {
			return "", errors.New("bad configuration")
		}
		return "state:" + string(config), nil
	})
	defer OnInit(nil)
	for range 2 {
		if v, err := c.Get(); err != nil || v != "state:" {
			t.Fatalf("before init: %q, %v; want the defaults' state", v, err)
		}
	}
	if len(built) != 1 || built[0] != "" {
		t.Fatalf("built %q; want once, from a nil configuration", built)
	}
	if err := CallInit([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(); v != "state:x" {
		t.Fatalf("after init: %q", v)
	}
	if err := CallInit([]byte("bad")); err == nil || !strings.Contains(err.Error(), "bad configuration") {
		t.Fatalf("init with a refused configuration: %v", err)
	}
	if v, _ := c.Get(); v != "state:x" {
		t.Fatalf("a failed init replaced the state: %q", v)
	}

	failing := Configure(func([]byte) (int, error) { return 0, errors.New("no defaults") })
	if _, err := failing.Get(); err == nil || err.Error() != "no defaults" {
		t.Fatalf("defaults that fail to build: %v", err)
	}
}
