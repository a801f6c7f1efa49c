package abi_test

import (
	"bytes"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Every decoder reads bytes from the other side of the boundary: the host
// decodes decisions a guest wrote, the SDK decodes requests the host
// wrote. Each fuzz target checks that the decoder
//   - never panics,
//   - allocates in proportion to its input (no list or string can be
//     larger than the bytes that describe it),
//   - and that an accepted input is canonical: encoding the decoded value
//     gives back exactly the input, and decoding that again succeeds.
//
// Seeds: testdata/fuzz/<target> (written from the golden vectors by
// go test -run TestGolden -update) plus the f.Add calls below.

// addSeeds adds the golden vectors of file and a few malformed inputs.
func addSeeds(f *testing.F, file string) {
	f.Helper()
	for _, gc := range readGolden(f, file) {
		b, err := hex.DecodeString(gc.Hex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if len(b) > 0 {
			f.Add(b[:len(b)-1])                 // truncated
			f.Add(append(b[:len(b):len(b)], 0)) // trailing byte
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x00, 0x00, 0x01, 0x00, 0x00}) // count 65536 with no items
}

// checkRoundTrip asserts that the accepted input b is canonical.
func checkRoundTrip(t *testing.T, b, re []byte, redecode func([]byte) error) {
	t.Helper()
	if !bytes.Equal(b, re) {
		t.Fatalf("decode→encode changed the bytes:\n  in %x\n out %x", b, re)
	}
	if err := redecode(re); err != nil {
		t.Fatalf("re-decoding the re-encoded value: %v", err)
	}
}

// checkStrings asserts that decoded strings fit in the input.
func checkStrings(t *testing.T, b []byte, total int) {
	t.Helper()
	if total > len(b) {
		t.Fatalf("decoded strings hold %d bytes, input has %d", total, len(b))
	}
}

// checkCap asserts that a decoded list's capacity is bounded by the
// input: at least min bytes per item.
func checkCap(t *testing.T, b []byte, capacity, min int) {
	t.Helper()
	if capacity*min > len(b) {
		t.Fatalf("list capacity %d × %d bytes exceeds input of %d bytes", capacity, min, len(b))
	}
}

func FuzzDecodeCacheRequest(f *testing.F) {
	addSeeds(f, "cache_request.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var r abi.CacheRequest
		if err := abi.DecodeCacheRequest(b, &r); err != nil {
			return
		}
		checkStrings(t, b, len(r.Method)+len(r.Route)+len(r.Path)+len(r.Query)+len(r.User))
		checkRoundTrip(t, b, abi.AppendCacheRequest(nil, &r), func(x []byte) error {
			var r2 abi.CacheRequest
			return abi.DecodeCacheRequest(x, &r2)
		})
	})
}

func FuzzDecodeCacheDecision(f *testing.F) {
	addSeeds(f, "cache_decision.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var d abi.CacheDecision
		err := abi.DecodeCacheDecision(b, &d)
		// The view decoder accepts exactly the same bytes, gives the same
		// decision, and reuses a Tags list it is handed.
		v := abi.CacheDecision{Key: "old", Tags: make([]string, 1, 8)}
		errV := abi.DecodeCacheDecisionView(b, &v)
		if (err == nil) != (errV == nil) {
			t.Fatalf("copying decoder: %v, view decoder: %v", err, errV)
		}
		if err != nil {
			return
		}
		if v.Key != d.Key || !slices.Equal(v.Tags, d.Tags) || v.Action != d.Action || v.TTLSeconds != d.TTLSeconds ||
			v.Scope != d.Scope || v.StaleSeconds != d.StaleSeconds {
			t.Fatalf("view decoder gave %+v, copying decoder %+v", v, d)
		}
		if len(d.Tags) <= 8 && cap(v.Tags) != 8 {
			t.Fatalf("view decoder reallocated a Tags list of capacity 8 for %d tags", len(d.Tags))
		}
		n := len(d.Key)
		for _, s := range d.Tags {
			n += len(s)
		}
		checkStrings(t, b, n)
		checkCap(t, b, cap(d.Tags), 4)
		checkRoundTrip(t, b, abi.AppendCacheDecision(nil, &d), func(x []byte) error {
			var d2 abi.CacheDecision
			return abi.DecodeCacheDecision(x, &d2)
		})
	})
}

func FuzzDecodeRouteRequest(f *testing.F) {
	addSeeds(f, "route_request.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var r abi.RouteRequest
		if err := abi.DecodeRouteRequest(b, &r); err != nil {
			return
		}
		checkStrings(t, b, len(r.Message))
		checkRoundTrip(t, b, abi.AppendRouteRequest(nil, &r), func(x []byte) error {
			var r2 abi.RouteRequest
			return abi.DecodeRouteRequest(x, &r2)
		})
	})
}

func FuzzDecodeRouteDecision(f *testing.F) {
	addSeeds(f, "route_decision.json")
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\xf8\x7f\x00\x00\x00\x00")) // NaN score
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x80\x00\x00\x00\x00")) // -0 score
	f.Fuzz(func(t *testing.T, b []byte) {
		var d abi.RouteDecision
		if err := abi.DecodeRouteDecision(b, &d); err != nil {
			return
		}
		if !(d.Score >= 0 && d.Score <= 1) {
			t.Fatalf("accepted score %v outside [0, 1]", d.Score)
		}
		checkStrings(t, b, len(d.Reason))
		checkRoundTrip(t, b, abi.AppendRouteDecision(nil, &d), func(x []byte) error {
			var d2 abi.RouteDecision
			return abi.DecodeRouteDecision(x, &d2)
		})
	})
}

func FuzzDecodeCompressRequest(f *testing.F) {
	addSeeds(f, "compress_request.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var r abi.CompressRequest
		if err := abi.DecodeCompressRequest(b, &r); err != nil {
			return
		}
		n := len(r.Query)
		for _, m := range r.Messages {
			n += len(m.ID) + len(m.Text)
		}
		checkStrings(t, b, n)
		checkCap(t, b, cap(r.Messages), 13)
		checkRoundTrip(t, b, abi.AppendCompressRequest(nil, &r), func(x []byte) error {
			var r2 abi.CompressRequest
			return abi.DecodeCompressRequest(x, &r2)
		})
	})
}

func FuzzDecodeCompressDecision(f *testing.F) {
	addSeeds(f, "compress_decision.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var d abi.CompressDecision
		if err := abi.DecodeCompressDecision(b, &d); err != nil {
			return
		}
		checkStrings(t, b, len(d.Summary))
		checkCap(t, b, cap(d.Keep), 4)
		checkRoundTrip(t, b, abi.AppendCompressDecision(nil, &d), func(x []byte) error {
			var d2 abi.CompressDecision
			return abi.DecodeCompressDecision(x, &d2)
		})
	})
}

// FuzzUnpackResult checks that packing and unpacking are inverse for every
// i64 a guest can return.
func FuzzUnpackResult(f *testing.F) {
	f.Add(uint64(0x0001_2340_0000_0009))
	f.Add(uint64(0))
	f.Add(^uint64(0))
	f.Fuzz(func(t *testing.T, v uint64) {
		p, n := abi.UnpackResult(v)
		if abi.PackResult(p, n) != v {
			t.Fatalf("PackResult(UnpackResult(%#x)) = %#x", v, abi.PackResult(p, n))
		}
	})
}
