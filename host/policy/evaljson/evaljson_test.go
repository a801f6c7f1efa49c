package evaljson_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy/evaljson"
	"github.com/wingman-app/wingate/sdk/abi"
)

type goldenCase struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
	Hex   string          `json:"hex"`
}

func readGolden(t *testing.T, file string) []goldenCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "sdk", "abi", "testdata", "golden", file))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(x)
	return string(b)
}

// keepIDs is the request a golden compress decision is read against: its
// message ids are m0, m1, … so that index i is id "m<i>".
func keepRequest(n int) *abi.CompressRequest {
	r := &abi.CompressRequest{}
	for i := 0; i < n; i++ {
		r.Messages = append(r.Messages, abi.Message{ID: fmt.Sprintf("m%d", i)})
	}
	return r
}

// TestGoldenThroughEvalJSON maps the DESIGN JSON of every golden vector
// through evaljson and the abi encoder and checks the exact bytes, then
// decodes the bytes and checks the JSON: the host's side of the vectors.
func TestGoldenThroughEvalJSON(t *testing.T) {
	// The empty cache request has no method or path, which the eval JSON
	// requires.
	rejected := map[string]bool{"cache_request.json/empty": true}
	type conv struct {
		file   string
		encode func(t *testing.T, v []byte) ([]byte, error)
		decode func(t *testing.T, b []byte) (any, error)
	}
	convs := []conv{
		{"cache_request.json",
			func(t *testing.T, v []byte) ([]byte, error) {
				r, err := evaljson.ParseCacheRequest(v)
				return abi.AppendCacheRequest(nil, &r), err
			},
			func(t *testing.T, b []byte) (any, error) {
				var r abi.CacheRequest
				err := abi.DecodeCacheRequest(b, &r)
				return evaljson.CacheRequestJSON(&r), err
			}},
		{"cache_decision.json",
			func(t *testing.T, v []byte) ([]byte, error) {
				d, err := evaljson.ParseCacheDecision(v)
				return abi.AppendCacheDecision(nil, &d), err
			},
			func(t *testing.T, b []byte) (any, error) {
				var d abi.CacheDecision
				err := abi.DecodeCacheDecision(b, &d)
				return evaljson.CacheDecisionJSON(&d), err
			}},
		{"route_request.json",
			func(t *testing.T, v []byte) ([]byte, error) {
				r, err := evaljson.ParseRouteRequest(v)
				return abi.AppendRouteRequest(nil, &r), err
			},
			func(t *testing.T, b []byte) (any, error) {
				var r abi.RouteRequest
				err := abi.DecodeRouteRequest(b, &r)
				return evaljson.RouteRequestJSON(&r), err
			}},
		{"route_decision.json",
			func(t *testing.T, v []byte) ([]byte, error) {
				d, err := evaljson.ParseRouteDecision(v)
				return abi.AppendRouteDecision(nil, &d), err
			},
			func(t *testing.T, b []byte) (any, error) {
				var d abi.RouteDecision
				err := abi.DecodeRouteDecision(b, &d)
				return evaljson.RouteDecisionJSON(&d), err
			}},
		{"compress_request.json",
			func(t *testing.T, v []byte) ([]byte, error) {
				r, err := evaljson.ParseCompressRequest(v)
				return abi.AppendCompressRequest(nil, &r), err
			},
			func(t *testing.T, b []byte) (any, error) {
				var r abi.CompressRequest
				err := abi.DecodeCompressRequest(b, &r)
				return evaljson.CompressRequestJSON(&r), err
			}},
		{"compress_decision.json",
			// The golden value keeps indexes; in eval JSON they become
			// the ids of keepRequest.
			func(t *testing.T, v []byte) ([]byte, error) {
				var raw struct {
					Keep    []uint32 `json:"keep"`
					Summary string   `json:"summary"`
					Tokens  uint32   `json:"tokens"`
				}
				if err := json.Unmarshal(v, &raw); err != nil {
					t.Fatal(err)
				}
				req := keepRequest(1000)
				ids := make([]string, len(raw.Keep))
				for i, k := range raw.Keep {
					ids[i] = req.Messages[k].ID
				}
				line, _ := json.Marshal(evaljson.CompressOut{Keep: ids, Summary: raw.Summary, Tokens: raw.Tokens})
				d, err := evaljson.ParseCompressDecision(line, req)
				return abi.AppendCompressDecision(nil, &d), err
			},
			func(t *testing.T, b []byte) (any, error) {
				var d abi.CompressDecision
				if err := abi.DecodeCompressDecision(b, &d); err != nil {
					return nil, err
				}
				j, err := evaljson.CompressDecisionJSON(&d, keepRequest(1000))
				idx := make([]uint32, 0, len(j.Keep))
				for _, id := range j.Keep {
					var n uint32
					fmt.Sscanf(id, "m%d", &n)
					idx = append(idx, n)
				}
				return map[string]any{"keep": idx, "summary": j.Summary, "tokens": j.Tokens}, err
			}},
	}
	for _, c := range convs {
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			for _, gc := range readGolden(t, c.file) {
				t.Run(gc.Name, func(t *testing.T) {
					got, err := c.encode(t, gc.Value)
					if rejected[c.file+"/"+gc.Name] {
						// A wire-level edge case the eval JSON refuses on
						// purpose; only the decode direction applies.
						if err == nil {
							t.Errorf("parse %s: accepted, want a required-field error", gc.Value)
						}
					} else if err != nil {
						t.Fatalf("parse %s: %v", gc.Value, err)
					}
					if h := hex.EncodeToString(got); err == nil && h != gc.Hex {
						t.Errorf("encode:\n got %s\nwant %s", h, gc.Hex)
					}
					want, _ := hex.DecodeString(gc.Hex)
					v, err := c.decode(t, want)
					if err != nil {
						t.Fatalf("decode: %v", err)
					}
					var wantV any
					_ = json.Unmarshal(gc.Value, &wantV)
					if g, w := canonical(t, v), canonical(t, wantV); g != w {
						t.Errorf("decode:\n got %s\nwant %s", g, w)
					}
				})
			}
		})
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	req := &abi.CompressRequest{Messages: []abi.Message{{ID: "a"}, {ID: "b"}}}
	tests := []struct {
		name  string
		parse func([]byte) error
		in    string
		want  string // substring of the error
	}{
		{"route missing message", routeP, `{"purpose":"chat"}`, "message: required"},
		{"route bad purpose", routeP, `{"message":"x","purpose":"gossip"}`, "purpose"},
		{"route wrong type", routeP, `{"message":"x","history_turns":"3"}`, "history_turns"},
		{"route negative", routeP, `{"message":"x","history_tokens":-1}`, "history_tokens"},
		{"route unknown field", routeP, `{"message":"x","tone":"warm"}`, `"tone"`},
		{"route trailing", routeP, `{"message":"x"} {}`, "trailing"},
		{"route not object", routeP, `["x"]`, "object"},
		{"route syntax", routeP, `{"message":`, "syntax"},
		{"route out bad tier", func(b []byte) error { _, err := evaljson.ParseRouteDecision(b); return err }, `{"tier":"gold","score":0.1}`, "tier"},
		{"route out score", func(b []byte) error { _, err := evaljson.ParseRouteDecision(b); return err }, `{"tier":"economy","score":1.5}`, "score"},
		{"cache missing method", cacheP, `{"path":"/x"}`, "method: required"},
		{"cache missing path", cacheP, `{"method":"GET"}`, "path: required"},
		{"cache user number", cacheP, `{"method":"GET","path":"/x","user":42}`, "user"},
		{"cache out action", func(b []byte) error { _, err := evaljson.ParseCacheDecision(b); return err }, `{"action":"store"}`, "action"},
		{"cache out scope", func(b []byte) error { _, err := evaljson.ParseCacheDecision(b); return err }, `{"action":"lookup","scope":"team"}`, "scope"},
		{"compress missing budget", compressP, `{"messages":[]}`, "budget_tokens: required"},
		{"compress bad role", compressP, `{"budget_tokens":1,"messages":[{"id":"a","role":"bot","text":""}]}`, "messages[0].role"},
		{"compress dup id", compressP, `{"budget_tokens":1,"messages":[{"id":"a","role":"user"},{"id":"a","role":"user"}]}`, "messages[1].id"},
		{"compress empty id", compressP, `{"budget_tokens":1,"messages":[{"role":"user"}]}`, "messages[0].id"},
		{"compress tokens type", compressP, `{"budget_tokens":1,"messages":[{"id":"a","role":"user","tokens":1.5}]}`, "tokens"},
		{"compress out unknown id", func(b []byte) error { _, err := evaljson.ParseCompressDecision(b, req); return err }, `{"keep":["z"]}`, "keep[0]"},
		{"compress out twice", func(b []byte) error { _, err := evaljson.ParseCompressDecision(b, req); return err }, `{"keep":["a","a"]}`, "keep[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("parse %s: no error", tt.in)
			}
			if !errors.Is(err, evaljson.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func routeP(b []byte) error    { _, err := evaljson.ParseRouteRequest(b); return err }
func cacheP(b []byte) error    { _, err := evaljson.ParseCacheRequest(b); return err }
func compressP(b []byte) error { _, err := evaljson.ParseCompressRequest(b); return err }

func TestDefaults(t *testing.T) {
	r, err := evaljson.ParseRouteRequest([]byte(`{"message":"hi"}`))
	if err != nil || r.Purpose != abi.PurposeChat {
		t.Errorf("route default purpose: %+v, %v", r, err)
	}
	c, err := evaljson.ParseCacheRequest([]byte(`{"method":"get","path":"/api/challenges","query":"?a=1"}`))
	if err != nil || c.Route != "/api/challenges" || c.Method != "GET" || c.Query != "a=1" {
		t.Errorf("cache defaults: %+v, %v", c, err)
	}
	cr, err := evaljson.ParseCompressRequest([]byte(`{"budget_tokens":10,"messages":[{"id":"a","role":"user","text":"12345"}]}`))
	if err != nil || cr.Messages[0].Tokens != 2 {
		t.Errorf("compress estimated tokens: %+v, %v", cr, err)
	}
	d, err := evaljson.ParseCompressDecision([]byte(`{"keep":["b","a"]}`), &cr)
	if err == nil {
		t.Errorf("keep of unknown id b accepted: %+v", d)
	}
	two := abi.CompressRequest{Messages: []abi.Message{{ID: "a"}, {ID: "b"}}}
	d, err = evaljson.ParseCompressDecision([]byte(`{"keep":["b","a"],"tokens":3}`), &two)
	if err != nil || len(d.Keep) != 2 || d.Keep[0] != 0 || d.Keep[1] != 1 {
		t.Errorf("keep order: %+v, %v", d, err)
	}
	if _, err := evaljson.CompressDecisionJSON(&abi.CompressDecision{Keep: []uint32{5}}, &two); err == nil {
		t.Error("index outside the request accepted")
	}
}
