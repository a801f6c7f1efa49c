package evaljson_test

import (
	"encoding/json"
	"testing"

	"github.com/wingman-app/wingate/host/policy/evaljson"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The parsers read author and operator input. Each fuzz target checks that
// a parser never panics and that what it accepts survives a round trip
// through the JSON form unchanged.

func FuzzParseRouteRequest(f *testing.F) {
	f.Add([]byte(`{"message":"hey","purpose":"chat","history_turns":3,"history_tokens":120}`))
	f.Add([]byte(`{"message":"","purpose":"assessment"}`))
	f.Add([]byte(`{"message":"x","purpose":"gossip"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := evaljson.ParseRouteRequest(b)
		if err != nil {
			return
		}
		line, _ := json.Marshal(evaljson.RouteRequestJSON(&r))
		r2, err := evaljson.ParseRouteRequest(line)
		if err != nil || r2 != r {
			t.Fatalf("round trip of %s: %+v → %s → %+v, %v", b, r, line, r2, err)
		}
	})
}

func FuzzParseRouteDecision(f *testing.F) {
	f.Add([]byte(`{"tier":"standard","score":0.5,"reason":"coaching"}`))
	f.Add([]byte(`{"tier":"premium","score":1e-300}`))
	f.Add([]byte(`{"tier":"economy","score":-0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := evaljson.ParseRouteDecision(b)
		if err != nil {
			return
		}
		if !(d.Score >= 0 && d.Score <= 1) {
			t.Fatalf("accepted score %v", d.Score)
		}
		line, _ := json.Marshal(evaljson.RouteDecisionJSON(&d))
		d2, err := evaljson.ParseRouteDecision(line)
		if err != nil || d2 != d {
			t.Fatalf("round trip of %s: %+v → %s → %+v, %v", b, d, line, d2, err)
		}
	})
}

func FuzzParseCacheRequest(f *testing.F) {
	f.Add([]byte(`{"method":"GET","route":"/api/users/:id/reputation","path":"/api/users/42/reputation","query":"","user":"42"}`))
	f.Add([]byte(`{"method":"get","path":"/x","query":"?a=b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := evaljson.ParseCacheRequest(b)
		if err != nil {
			return
		}
		line, _ := json.Marshal(evaljson.CacheRequestJSON(&r))
		r2, err := evaljson.ParseCacheRequest(line)
		if err != nil || r2 != r {
			t.Fatalf("round trip of %s: %+v → %s → %+v, %v", b, r, line, r2, err)
		}
	})
}

func FuzzParseCacheDecision(f *testing.F) {
	f.Add([]byte(`{"action":"lookup","key":"rep:42","ttl_s":900,"scope":"user","stale_s":60,"tags":["user:42"]}`))
	f.Add([]byte(`{"action":"bypass"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := evaljson.ParseCacheDecision(b)
		if err != nil {
			return
		}
		enc := abi.AppendCacheDecision(nil, &d)
		line, _ := json.Marshal(evaljson.CacheDecisionJSON(&d))
		d2, err := evaljson.ParseCacheDecision(line)
		if err != nil {
			t.Fatalf("round trip of %s: %s: %v", b, line, err)
		}
		if string(abi.AppendCacheDecision(nil, &d2)) != string(enc) {
			t.Fatalf("round trip of %s changed the decision: %+v → %+v", b, d, d2)
		}
	})
}

func FuzzParseCompressRequest(f *testing.F) {
	f.Add([]byte(`{"messages":[{"id":"m1","role":"system","text":"User is shy.","tokens":4},{"id":"m2","role":"user","text":"Hi"}],"query":"ok","budget_tokens":1500}`))
	f.Add([]byte(`{"messages":[],"budget_tokens":0}`))
	f.Add([]byte(`{"messages":[{"id":"a","role":"user"},{"id":"a","role":"user"}],"budget_tokens":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := evaljson.ParseCompressRequest(b)
		if err != nil {
			return
		}
		enc := abi.AppendCompressRequest(nil, &r)
		line, _ := json.Marshal(evaljson.CompressRequestJSON(&r))
		r2, err := evaljson.ParseCompressRequest(line)
		if err != nil {
			t.Fatalf("round trip of %s: %s: %v", b, line, err)
		}
		if string(abi.AppendCompressRequest(nil, &r2)) != string(enc) {
			t.Fatalf("round trip of %s changed the request", b)
		}
	})
}

func FuzzParseCompressDecision(f *testing.F) {
	f.Add([]byte(`{"keep":["a","c"],"summary":"s","tokens":7}`))
	f.Add([]byte(`{"keep":[]}`))
	f.Add([]byte(`{"keep":["a","a"]}`))
	req := &abi.CompressRequest{Messages: []abi.Message{{ID: "a"}, {ID: "b"}, {ID: "c"}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := evaljson.ParseCompressDecision(b, req)
		if err != nil {
			return
		}
		j, err := evaljson.CompressDecisionJSON(&d, req)
		if err != nil {
			t.Fatalf("accepted decision %+v does not map back: %v", d, err)
		}
		line, _ := json.Marshal(j)
		d2, err := evaljson.ParseCompressDecision(line, req)
		if err != nil || string(abi.AppendCompressDecision(nil, &d2)) != string(abi.AppendCompressDecision(nil, &d)) {
			t.Fatalf("round trip of %s: %+v → %s → %+v, %v", b, d, line, d2, err)
		}
	})
}
