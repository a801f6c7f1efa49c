package policytest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// A loaded policy version is tested directly, without fallback.
var _ policytest.Decider = (*policy.Version)(nil)

// reference is a tiny native policy of every kind that the case files in
// testdata/cases describe.
var reference = policytest.Funcs{
	CacheFn: func(r abi.CacheRequest) (abi.CacheDecision, error) {
		if r.Method != "GET" {
			return abi.CacheDecision{Action: abi.CacheBypass}, nil
		}
		return abi.CacheDecision{Action: abi.CacheLookup, Key: r.Path, TTLSeconds: 900, Scope: abi.ScopeUser, Tags: []string{"user:" + r.User}}, nil
	},
	RouteFn: func(r abi.RouteRequest) (abi.RouteDecision, error) {
		if r.Purpose == abi.PurposeAssessment {
			return abi.RouteDecision{Tier: abi.TierPremium, Score: 0.9, Reason: "assessment"}, nil
		}
		return abi.RouteDecision{Tier: abi.TierEconomy, Score: 0.1, Reason: "small talk"}, nil
	},
	CompressFn: func(r abi.CompressRequest) (abi.CompressDecision, error) {
		// Pinned system messages, then the newest that fit.
		var d abi.CompressDecision
		keep := make([]bool, len(r.Messages))
		for i, m := range r.Messages {
			if m.Role == abi.RoleSystem && d.Tokens+m.Tokens <= r.BudgetTokens {
				keep[i], d.Tokens = true, d.Tokens+m.Tokens
			}
		}
		for i := len(r.Messages) - 1; i >= 0; i-- {
			if m := r.Messages[i]; !keep[i] && d.Tokens+m.Tokens <= r.BudgetTokens {
				keep[i], d.Tokens = true, d.Tokens+m.Tokens
			}
		}
		for i, k := range keep {
			if k {
				d.Keep = append(d.Keep, uint32(i))
			}
		}
		return d, nil
	},
}

func TestRunPasses(t *testing.T) {
	policytest.Run(t, reference, "testdata/cases")
}

func TestFailuresShowADiff(t *testing.T) {
	wrong := policytest.Funcs{
		RouteFn: func(abi.RouteRequest) (abi.RouteDecision, error) {
			return abi.RouteDecision{Tier: abi.TierStandard, Score: 0.62, Reason: "coaching"}, nil
		},
		CacheFn: func(r abi.CacheRequest) (abi.CacheDecision, error) {
			return abi.CacheDecision{Action: abi.CacheLookup, Scope: abi.ScopeUser, TTLSeconds: 900, Tags: []string{"user:7", "x"}}, nil
		},
		CompressFn: func(r abi.CompressRequest) (abi.CompressDecision, error) {
			return abi.CompressDecision{Keep: []uint32{0, 1, 2}, Tokens: 105}, nil
		},
	}
	cases, err := policytest.LoadDir("testdata/cases")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]policytest.Result{}
	for _, r := range policytest.RunAll(context.Background(), wrong, 0, cases) {
		byName[r.Case.Name] = r
	}
	tests := []struct {
		name string
		want []string // substrings of the formatted result
	}{
		{"small talk is economy", []string{"FAIL route.json: small talk is economy (route)", `tier: got "standard", want "economy"`, "score: got 0.62, want within [0, 0.3]", `input: {"message":"hey"}`}},
		{"reputation per user", []string{`tags: got ["user:7","x"], want ["user:42"]; missing ["user:42"]; extra ["user:7","x"]`}},
		{"writes bypass", []string{`action: got "lookup", want "bypass"`}},
		{"keeps the pinned fact", []string{"tokens: got 105, over the budget of 60", "tokens: got 105, want at most 60"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := byName[tt.name]
			if !ok {
				t.Fatalf("no result for %q", tt.name)
			}
			if r.Passed() {
				t.Fatal("passed, want a failure")
			}
			s := r.String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("result does not contain %q:\n%s", w, s)
				}
			}
		})
	}
}

func TestErrorsAreFailures(t *testing.T) {
	boom := errors.New("boom")
	d := policytest.Funcs{RouteFn: func(abi.RouteRequest) (abi.RouteDecision, error) { return abi.RouteDecision{}, boom }}
	tests := []struct {
		name string
		kind abi.Kind
		c    policytest.Case
		want string
	}{
		{"policy error", 0, policytest.Case{Name: "x", Input: []byte(`{"message":"hi"}`), Want: []byte(`{}`)}, "boom"},
		{"no handler", 0, policytest.Case{Name: "x", Input: []byte(`{"method":"GET","path":"/"}`), Want: []byte(`{}`)}, "no handler"},
		{"unknown want field", 0, policytest.Case{Name: "x", Input: []byte(`{"message":"hi"}`), Want: []byte(`{"tierr":"economy"}`)}, "tierr"},
		{"bad input", abi.KindRoute, policytest.Case{Name: "x", Input: []byte(`{"msg":"hi"}`), Want: []byte(`{}`)}, "msg"},
		{"unknown kind", 0, policytest.Case{Name: "x", Input: []byte(`{"text":"hi"}`), Want: []byte(`{}`)}, "kind"},
		{"bad range", 0, policytest.Case{Name: "x", Input: []byte(`{"message":"hi"}`), Want: []byte(`{"score_range":[1,0]}`)}, "score_range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := policytest.RunCase(context.Background(), d, tt.kind, tt.c)
			if r.Passed() || r.Err == nil {
				t.Fatalf("result %+v, want an error", r)
			}
			if !strings.Contains(r.Err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", r.Err, tt.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		kind  abi.Kind
		input string
		want  string
	}{
		{abi.KindRoute, `{"message":"hey"}`, `{"tier":"economy","score":0.1,"reason":"small talk"}`},
		{abi.KindCache, `{"method":"GET","path":"/a","user":"1"}`, `{"action":"lookup","key":"/a","ttl_s":900,"scope":"user","stale_s":0,"tags":["user:1"]}`},
		{abi.KindCache, `{"method":"PUT","path":"/a"}`, `{"action":"bypass","key":"","ttl_s":0,"scope":"global","stale_s":0,"tags":[]}`},
		{abi.KindCompress, `{"messages":[{"id":"a","role":"user","text":"x","tokens":3},{"id":"b","role":"user","text":"y","tokens":3}],"budget_tokens":4}`, `{"keep":["b"],"summary":"","tokens":3}`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.kind), func(t *testing.T) {
			got, err := policytest.Decide(context.Background(), reference, tt.kind, []byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := policytest.LoadDir(dir); err == nil || !strings.Contains(err.Error(), "no case files") {
		t.Errorf("empty dir: %v", err)
	}
	tests := map[string]string{
		`{"name":"x"}`:                              "JSON array",
		`[{"input":{},"want":{}}]`:                  "name: required",
		`[{"name":"a","want":{}}]`:                  "input: required",
		`[{"name":"a","input":{}}]`:                 "want: required",
		`[{"name":"a","input":{},"want":{},"x":1}]`: "unknown field",
	}
	i := 0
	for body, want := range tests {
		i++
		path := fmt.Sprintf("%s/c%d.json", dir, i)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := policytest.LoadFile(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", body, err, want)
		}
	}
}
