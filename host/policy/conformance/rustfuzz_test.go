package conformance

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The Rust SDK's request decoders run inside the guest, on bytes from
// across the wasm boundary. FuzzRustSDKDecoders sends arbitrary bytes as
// a request of each kind to Rust SDK modules (the cache policy, the route
// and compress examples) and checks that the guest refuses (error status)
// exactly what package abi refuses, never traps, and answers everything
// else with a decision that passes the field checks.

type rustGuests struct {
	once   sync.Once
	err    error
	guests map[abi.Kind]*guest
}

var rustFuzz rustGuests

func (r *rustGuests) get(t testing.TB) map[abi.Kind]*guest {
	r.once.Do(func() {
		r.guests = map[abi.Kind]*guest{}
		for k, dir := range map[abi.Kind]string{abi.KindCache: "plugins/cache-rs", abi.KindRoute: "sdk/rust/examples/route", abi.KindCompress: "sdk/rust/examples/compress"} {
			wasm, err := os.ReadFile(buildtest.Build(t, filepath.Join(repo, dir)))
			if err != nil {
				r.err = err
				return
			}
			h, err := newHarness(context.Background(), wasm)
			if err != nil {
				r.err = err
				return
			}
			g, err := (&run{ctx: context.Background(), h: h}).fresh()
			if err != nil {
				r.err = err
				return
			}
			r.guests[k] = g
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.guests
}

func FuzzRustSDKDecoders(f *testing.F) {
	for _, file := range []string{"cache_request.json", "route_request.json", "compress_request.json"} {
		vs, _ := abi.GoldenVectors(file)
		for _, v := range vs {
			b, _ := v.Bytes()
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := context.Background()
		for k, g := range rustFuzz.get(t) {
			var err error
			switch k {
			case abi.KindCache:
				var r abi.CacheRequest
				err = abi.DecodeCacheRequest(b, &r)
			case abi.KindRoute:
				var r abi.RouteRequest
				err = abi.DecodeRouteRequest(b, &r)
			case abi.KindCompress:
				var r abi.CompressRequest
				err = abi.DecodeCompressRequest(b, &r)
			}
			st, body, cerr := g.decideRaw(ctx, k, b)
			if cerr != nil {
				t.Fatalf("%v %x: %v", k, b, cerr)
			}
			if (st == abi.StatusOK) != (err == nil) {
				t.Fatalf("%v %x: guest status %d (%q), abi %v", k, b, st, body, err)
			}
			if st == abi.StatusOK {
				if err := checkDecision(k, b, body); err != nil {
					t.Fatalf("%v %x: %v", k, b, err)
				}
			}
		}
	})
}
