package abi_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

// update rewrites the hex of every golden vector from its value, and the
// fuzz seed corpus from the vectors. Review the diff by hand before
// committing: the vectors are the contract.
var update = flag.Bool("update", false, "rewrite testdata/golden hex and testdata/fuzz seeds from the values")

// goldenCase is one vector: a value in the JSON shape of docs/design.md's offline
// evaluation (except compress decisions, whose keep holds message indexes,
// as on the wire) and its exact encoding.
type goldenCase struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
	Hex   string          `json:"hex"`
}

// The JSON forms of the six types, as in docs/design.md.
type (
	cacheReqJSON struct {
		Method string `json:"method"`
		Route  string `json:"route"`
		Path   string `json:"path"`
		Query  string `json:"query"`
		User   string `json:"user"`
	}
	cacheDecJSON struct {
		Action string   `json:"action"`
		Key    string   `json:"key"`
		TTL    uint32   `json:"ttl_s"`
		Scope  string   `json:"scope"`
		Stale  uint32   `json:"stale_s"`
		Tags   []string `json:"tags"`
	}
	routeReqJSON struct {
		Message       string `json:"message"`
		Purpose       string `json:"purpose"`
		HistoryTurns  uint32 `json:"history_turns"`
		HistoryTokens uint32 `json:"history_tokens"`
	}
	routeDecJSON struct {
		Tier   string  `json:"tier"`
		Score  float64 `json:"score"`
		Reason string  `json:"reason"`
	}
	messageJSON struct {
		ID     string `json:"id"`
		Role   string `json:"role"`
		Text   string `json:"text"`
		Tokens uint32 `json:"tokens"`
	}
	compressReqJSON struct {
		Messages []messageJSON `json:"messages"`
		Query    string        `json:"query"`
		Budget   uint32        `json:"budget_tokens"`
	}
	compressDecJSON struct {
		Keep    []uint32 `json:"keep"`
		Summary string   `json:"summary"`
		Tokens  uint32   `json:"tokens"`
	}
)

var (
	actionNames  = []string{"bypass", "lookup"}
	scopeNames   = []string{"global", "user"}
	purposeNames = []string{"chat", "assessment"}
	tierNames    = []string{"economy", "standard", "premium"}
	roleNames    = []string{"user", "assistant", "system"}
)

func enumOf(t *testing.T, names []string, s string) uint8 {
	t.Helper()
	for i, n := range names {
		if n == s {
			return uint8(i)
		}
	}
	t.Fatalf("unknown enum name %q (want one of %v)", s, names)
	return 0
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// codec binds one type's JSON form to its Go value and its codec, so that
// a single test body covers all six types.
type codec struct {
	file string
	fuzz string // name of the fuzz target seeded from this file
	// encode maps the JSON form to the Go value and encodes it.
	encode func(t *testing.T, value []byte) []byte
	// decode decodes wire bytes and maps the Go value to the JSON form.
	decode func(b []byte) (any, error)
}

func strictUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("golden value %s: %v", data, err)
	}
}

var codecs = []codec{
	{
		file: "cache_request.json", fuzz: "FuzzDecodeCacheRequest",
		encode: func(t *testing.T, value []byte) []byte {
			var j cacheReqJSON
			strictUnmarshal(t, value, &j)
			r := abi.CacheRequest{Method: j.Method, Route: j.Route, Path: j.Path, Query: j.Query, User: j.User}
			return abi.AppendCacheRequest(nil, &r)
		},
		decode: func(b []byte) (any, error) {
			var r abi.CacheRequest
			err := abi.DecodeCacheRequest(b, &r)
			return cacheReqJSON{r.Method, r.Route, r.Path, r.Query, r.User}, err
		},
	},
	{
		file: "cache_decision.json", fuzz: "FuzzDecodeCacheDecision",
		encode: func(t *testing.T, value []byte) []byte {
			var j cacheDecJSON
			strictUnmarshal(t, value, &j)
			d := abi.CacheDecision{
				Action: abi.CacheAction(enumOf(t, actionNames, j.Action)), Key: j.Key, TTLSeconds: j.TTL,
				Scope: abi.Scope(enumOf(t, scopeNames, j.Scope)), StaleSeconds: j.Stale, Tags: j.Tags,
			}
			return abi.AppendCacheDecision(nil, &d)
		},
		decode: func(b []byte) (any, error) {
			var d abi.CacheDecision
			if err := abi.DecodeCacheDecision(b, &d); err != nil {
				return nil, err
			}
			return cacheDecJSON{actionNames[d.Action], d.Key, d.TTLSeconds, scopeNames[d.Scope], d.StaleSeconds, orEmpty(d.Tags)}, nil
		},
	},
	{
		file: "route_request.json", fuzz: "FuzzDecodeRouteRequest",
		encode: func(t *testing.T, value []byte) []byte {
			var j routeReqJSON
			strictUnmarshal(t, value, &j)
			r := abi.RouteRequest{Message: j.Message, Purpose: abi.Purpose(enumOf(t, purposeNames, j.Purpose)),
				HistoryTurns: j.HistoryTurns, HistoryTokens: j.HistoryTokens}
			return abi.AppendRouteRequest(nil, &r)
		},
		decode: func(b []byte) (any, error) {
			var r abi.RouteRequest
			if err := abi.DecodeRouteRequest(b, &r); err != nil {
				return nil, err
			}
			return routeReqJSON{r.Message, purposeNames[r.Purpose], r.HistoryTurns, r.HistoryTokens}, nil
		},
	},
	{
		file: "route_decision.json", fuzz: "FuzzDecodeRouteDecision",
		encode: func(t *testing.T, value []byte) []byte {
			var j routeDecJSON
			strictUnmarshal(t, value, &j)
			d := abi.RouteDecision{Tier: abi.Tier(enumOf(t, tierNames, j.Tier)), Score: j.Score, Reason: j.Reason}
			return abi.AppendRouteDecision(nil, &d)
		},
		decode: func(b []byte) (any, error) {
			var d abi.RouteDecision
			if err := abi.DecodeRouteDecision(b, &d); err != nil {
				return nil, err
			}
			return routeDecJSON{tierNames[d.Tier], d.Score, d.Reason}, nil
		},
	},
	{
		file: "compress_request.json", fuzz: "FuzzDecodeCompressRequest",
		encode: func(t *testing.T, value []byte) []byte {
			var j compressReqJSON
			strictUnmarshal(t, value, &j)
			r := abi.CompressRequest{Query: j.Query, BudgetTokens: j.Budget}
			for _, m := range j.Messages {
				r.Messages = append(r.Messages, abi.Message{ID: m.ID, Role: abi.Role(enumOf(t, roleNames, m.Role)), Text: m.Text, Tokens: m.Tokens})
			}
			return abi.AppendCompressRequest(nil, &r)
		},
		decode: func(b []byte) (any, error) {
			var r abi.CompressRequest
			if err := abi.DecodeCompressRequest(b, &r); err != nil {
				return nil, err
			}
			j := compressReqJSON{Messages: []messageJSON{}, Query: r.Query, Budget: r.BudgetTokens}
			for _, m := range r.Messages {
				j.Messages = append(j.Messages, messageJSON{m.ID, roleNames[m.Role], m.Text, m.Tokens})
			}
			return j, nil
		},
	},
	{
		file: "compress_decision.json", fuzz: "FuzzDecodeCompressDecision",
		encode: func(t *testing.T, value []byte) []byte {
			var j compressDecJSON
			strictUnmarshal(t, value, &j)
			d := abi.CompressDecision{Keep: j.Keep, Summary: j.Summary, Tokens: j.Tokens}
			return abi.AppendCompressDecision(nil, &d)
		},
		decode: func(b []byte) (any, error) {
			var d abi.CompressDecision
			if err := abi.DecodeCompressDecision(b, &d); err != nil {
				return nil, err
			}
			return compressDecJSON{orEmpty(d.Keep), d.Summary, d.Tokens}, nil
		},
	},
}

func readGolden(t testing.TB, file string) []goldenCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden", file))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(cases) < 4 {
		t.Fatalf("%s: %d cases, want at least 4 (typical, empty, unicode, many)", file, len(cases))
	}
	return cases
}

// canonical re-indents JSON so that values compare independently of the
// file's formatting.
func canonical(t *testing.T, v any) string {
	t.Helper()
	var raw []byte
	switch v := v.(type) {
	case json.RawMessage:
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			t.Fatal(err)
		}
		raw, _ = json.Marshal(x)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var x any
		_ = json.Unmarshal(b, &x)
		raw, _ = json.Marshal(x)
	}
	return string(raw)
}

// TestGolden checks every vector both ways: value → bytes must equal the
// hex, and hex → value must equal the value.
func TestGolden(t *testing.T) {
	for _, c := range codecs {
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			cases := readGolden(t, c.file)
			changed := false
			for i := range cases {
				gc := &cases[i]
				t.Run(gc.Name, func(t *testing.T) {
					got := c.encode(t, gc.Value)
					if *update {
						if hex.EncodeToString(got) != gc.Hex {
							gc.Hex = hex.EncodeToString(got)
							changed = true
						}
						return
					}
					want, err := hex.DecodeString(gc.Hex)
					if err != nil {
						t.Fatalf("bad hex: %v", err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("encode:\n got %x\nwant %x", got, want)
					}
					v, err := c.decode(want)
					if err != nil {
						t.Fatalf("decode: %v", err)
					}
					if g, w := canonical(t, v), canonical(t, gc.Value); g != w {
						t.Errorf("decode:\n got %s\nwant %s", g, w)
					}
				})
			}
			if *update && changed {
				writeGolden(t, c.file, cases)
			}
			if *update {
				writeSeeds(t, c.fuzz, cases)
			}
		})
	}
}

func writeGolden(t *testing.T, file string, cases []goldenCase) {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, gc := range cases {
		var v bytes.Buffer
		if err := json.Compact(&v, gc.Value); err != nil {
			t.Fatal(err)
		}
		name, _ := json.Marshal(gc.Name)
		fmt.Fprintf(&buf, "  {\n    \"name\": %s,\n    \"value\": %s,\n    \"hex\": %q\n  }", name, v.Bytes(), gc.Hex)
		if i < len(cases)-1 {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	buf.WriteString("]\n")
	if err := os.WriteFile(filepath.Join("testdata", "golden", file), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeSeeds writes each vector as a seed of the decoder's fuzz target in
// the go test fuzz corpus format.
func writeSeeds(t *testing.T, target string, cases []goldenCase) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, gc := range cases {
		b, err := hex.DecodeString(gc.Hex)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, "golden-"+gc.Name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
