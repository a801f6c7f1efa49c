package sdk

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

// The SDK decodes requests with its own single-allocation decoders
// (decode.go). These tests hold them to the ABI: every golden request
// vector (abi/testdata/golden) decodes to the same value as with package
// abi, and on any input both accept or both refuse, with the same value.

type goldenVector struct {
	Name string `json:"name"`
	Hex  string `json:"hex"`
}

func goldenRequests(tb testing.TB, file string) [][]byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("abi", "testdata", "golden", file))
	if err != nil {
		tb.Fatal(err)
	}
	var vs []goldenVector
	if err := json.Unmarshal(data, &vs); err != nil {
		tb.Fatal(err)
	}
	out := make([][]byte, 0, len(vs))
	for _, v := range vs {
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			tb.Fatalf("%s %s: %v", file, v.Name, err)
		}
		out = append(out, b)
	}
	return out
}

// sameMessages compares message lists, treating nil and empty alike.
func sameMessages(a, b []Message) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// agree decodes b with the SDK's decoder and abi's for kind and fails t
// if they disagree on acceptance or on the decoded value.
func agree(t *testing.T, kind abi.Kind, b []byte) {
	t.Helper()
	switch kind {
	case abi.KindCache:
		var got, want CacheRequest
		gerr, werr := decodeCacheRequest(b, &got), abi.DecodeCacheRequest(b, &want)
		if (gerr == nil) != (werr == nil) || (gerr == nil && got != want) {
			t.Fatalf("cache request %x: sdk %+v, %v; abi %+v, %v", b, got, gerr, want, werr)
		}
	case abi.KindRoute:
		var got, want RouteRequest
		gerr, werr := decodeRouteRequest(b, &got), abi.DecodeRouteRequest(b, &want)
		if (gerr == nil) != (werr == nil) || (gerr == nil && got != want) {
			t.Fatalf("route request %x: sdk %+v, %v; abi %+v, %v", b, got, gerr, want, werr)
		}
	case abi.KindCompress:
		var got, want CompressRequest
		gerr, werr := decodeCompressRequest(b, &got), abi.DecodeCompressRequest(b, &want)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("compress request %x: sdk err %v; abi err %v", b, gerr, werr)
		}
		if gerr == nil && (got.Query != want.Query || got.BudgetTokens != want.BudgetTokens || !sameMessages(got.Messages, want.Messages)) {
			t.Fatalf("compress request %x: sdk %+v; abi %+v", b, got, want)
		}
		if gerr == nil && !bytes.Equal(abi.AppendCompressRequest(nil, &got), b) {
			t.Fatalf("compress request %x does not re-encode to itself", b)
		}
	}
}

var requestFiles = map[abi.Kind]string{
	abi.KindCache:    "cache_request.json",
	abi.KindRoute:    "route_request.json",
	abi.KindCompress: "compress_request.json",
}

func TestGoldenRequestsSDKDecoders(t *testing.T) {
	for kind, file := range requestFiles {
		t.Run(kind.String(), func(t *testing.T) {
			for _, b := range goldenRequests(t, file) {
				agree(t, kind, b)
				// The golden bytes are valid: the SDK must accept them.
				var err error
				switch kind {
				case abi.KindCache:
					err = decodeCacheRequest(b, &CacheRequest{})
				case abi.KindRoute:
					err = decodeRouteRequest(b, &RouteRequest{})
				case abi.KindCompress:
					err = decodeCompressRequest(b, &CompressRequest{})
				}
				if err != nil {
					t.Errorf("golden %x refused: %v", b, err)
				}
			}
		})
	}
}

// fuzzAgree seeds f with the golden vectors of kind and their truncations.
func fuzzAgree(f *testing.F, kind abi.Kind) {
	for _, b := range goldenRequests(f, requestFiles[kind]) {
		f.Add(b)
		if len(b) > 0 {
			f.Add(b[:len(b)-1])
			f.Add(append(b[:len(b):len(b)], 0))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) { agree(t, kind, b) })
}

func FuzzSDKDecodeCacheRequest(f *testing.F)    { fuzzAgree(f, abi.KindCache) }
func FuzzSDKDecodeRouteRequest(f *testing.F)    { fuzzAgree(f, abi.KindRoute) }
func FuzzSDKDecodeCompressRequest(f *testing.F) { fuzzAgree(f, abi.KindCompress) }
