package abi_test

import (
	"encoding/hex"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

// goldenBytes returns the bytes of the named golden vector.
func goldenBytes(b *testing.B, file, name string) []byte {
	b.Helper()
	for _, gc := range readGolden(b, file) {
		if gc.Name == name {
			v, err := hex.DecodeString(gc.Hex)
			if err != nil {
				b.Fatal(err)
			}
			return v
		}
	}
	b.Fatalf("no case %q in %s", name, file)
	return nil
}

// The host encodes a request and decodes a decision on every policy call;
// these are the codec's share of a decision's cost.
func BenchmarkCodec(b *testing.B) {
	b.Run("cache/request/encode", func(b *testing.B) {
		r := abi.CacheRequest{Method: "GET", Route: "/api/users/:id/reputation", Path: "/api/users/42/reputation", User: "42"}
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		for b.Loop() {
			buf = abi.AppendCacheRequest(buf[:0], &r)
		}
	})
	b.Run("cache/decision/decode", func(b *testing.B) {
		in := goldenBytes(b, "cache_decision.json", "typical")
		var d abi.CacheDecision
		b.ReportAllocs()
		for b.Loop() {
			if err := abi.DecodeCacheDecision(in, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("route/request/encode-500B", func(b *testing.B) {
		in := goldenBytes(b, "route_request.json", "assessment_long")
		var r abi.RouteRequest
		if err := abi.DecodeRouteRequest(in, &r); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			buf = abi.AppendRouteRequest(buf[:0], &r)
		}
	})
	b.Run("route/decision/decode", func(b *testing.B) {
		in := goldenBytes(b, "route_decision.json", "typical")
		var d abi.RouteDecision
		b.ReportAllocs()
		for b.Loop() {
			if err := abi.DecodeRouteDecision(in, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compress/request/encode-50msgs", func(b *testing.B) {
		in := goldenBytes(b, "compress_request.json", "many")
		var r abi.CompressRequest
		if err := abi.DecodeCompressRequest(in, &r); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, len(in))
		b.ReportAllocs()
		for b.Loop() {
			buf = abi.AppendCompressRequest(buf[:0], &r)
		}
	})
	b.Run("compress/decision/decode-100keep", func(b *testing.B) {
		in := goldenBytes(b, "compress_decision.json", "many")
		var d abi.CompressDecision
		b.ReportAllocs()
		for b.Loop() {
			if err := abi.DecodeCompressDecision(in, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
