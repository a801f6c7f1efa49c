package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

func TestParsePoliciesFile(t *testing.T) {
	tests := []struct {
		name, in, err string
	}{
		{"ok", `{"policies":[{"kind":"cache","name":"c","file":"c.wasm","deadline_ms":2,"config":{"a":1}}]}`, ""},
		{"empty", `{"policies":[]}`, ""},
		{"unknown kind", `{"policies":[{"kind":"nope","name":"c","file":"c.wasm"}]}`, `kind "nope"`},
		{"twice", `{"policies":[{"kind":"cache","name":"a","file":"a.wasm"},{"kind":"cache","name":"b","file":"b.wasm"}]}`, "configured twice"},
		{"no name", `{"policies":[{"kind":"cache","file":"a.wasm"}]}`, "name: required"},
		{"escape", `{"policies":[{"kind":"cache","name":"a","file":"../a.wasm"}]}`, "inside the policy directory"},
		{"deadline", `{"policies":[{"kind":"cache","name":"a","file":"a.wasm","deadline_ms":-1}]}`, "deadline_ms"},
		{"tier on cache", `{"policies":[{"kind":"cache","name":"a","file":"a.wasm","default_tier":"premium"}]}`, "only for kind route"},
		{"bad tier", `{"policies":[{"kind":"route","name":"a","file":"a.wasm","default_tier":"gold"}]}`, `default_tier "gold"`},
		{"unknown field", `{"policies":[{"kind":"route","name":"a","file":"a.wasm","deadline":3}]}`, "unknown field"},
		{"not json", `{`, "policies.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePoliciesFile([]byte(tt.in))
			if tt.err == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.err)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	rt := testRuntime(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "guest.wasm"), testGuest(t), 0o644); err != nil {
		t.Fatal(err)
	}
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	defer e.Close()

	_, err := LoadDir(context.Background(), rt, e, dir)
	if !errors.Is(err, ErrNoPoliciesFile) {
		t.Fatalf("no file: err = %v, want ErrNoPoliciesFile", err)
	}
	file := `{"policies":[
		{"kind":"route","name":"r","file":"guest.wasm","config":{"mode":"ok","tag":"from-config"},"default_tier":"premium","min_instances":1,"deadline_ms":10000},
		{"kind":"cache","name":"c","file":"missing.wasm"}
	]}`
	if err := os.WriteFile(filepath.Join(dir, PoliciesFileName), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadDir(context.Background(), rt, e, dir)
	if err == nil || !strings.Contains(err.Error(), "missing.wasm") {
		t.Errorf("err = %v, want it to name missing.wasm", err)
	}
	if len(loaded) != 1 || e.Active(abi.KindRoute) != loaded[0] || e.Active(abi.KindCache) != nil {
		t.Fatalf("loaded %v; active route %v, cache %v", loaded, e.Active(abi.KindRoute), e.Active(abi.KindCache))
	}
	d, r := e.Route(context.Background(), &abi.RouteRequest{Message: "hi"})
	if r.Outcome != OutcomeOK || d.Reason != "from-config" || r.Policy != "r" {
		t.Errorf("route = %+v, %+v", d, r)
	}
	if d, r := e.Cache(context.Background(), &cacheReq); r.Outcome != OutcomeFallback || d.Action != abi.CacheBypass {
		t.Errorf("cache without policy = %+v, %v", d, r.Outcome)
	}
	e.Deactivate(abi.KindRoute).Close()
	if d, _ := e.Route(context.Background(), &abi.RouteRequest{}); d.Tier != abi.TierPremium {
		t.Errorf("fallback tier = %v, want the configured premium", d.Tier)
	}
}

// TestRepositoryPolicies loads the repository's policies directory (built
// by go generate ./policies) and asks each kind for one decision.
func TestRepositoryPolicies(t *testing.T) {
	dir := filepath.Join("..", "..", "policies")
	if _, err := os.Stat(filepath.Join(dir, PoliciesFileName)); err != nil {
		t.Skip("no policies/policies.json")
	}
	rt := testRuntime(t)
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	defer e.Close()
	if _, err := LoadDir(context.Background(), rt, e, dir); err != nil {
		t.Fatalf("LoadDir: %v (run go generate ./policies)", err)
	}
	// A timeout only says the machine is busy (the file's deadlines are
	// production ones); anything else is a broken policy.
	ok := func(o Outcome) bool { return o == OutcomeOK || o == OutcomeTimeout }
	ctx := context.Background()
	if _, r := e.Cache(ctx, &cacheReq); !ok(r.Outcome) {
		t.Errorf("cache outcome %v", r.Outcome)
	}
	if _, r := e.Route(ctx, &abi.RouteRequest{Message: message500}); !ok(r.Outcome) {
		t.Errorf("route outcome %v", r.Outcome)
	}
	req := abi.CompressRequest{Query: "sister", BudgetTokens: 100, Messages: []abi.Message{{ID: "a", Text: "my sister", Tokens: 5}}}
	if _, r := e.Compress(ctx, &req); !ok(r.Outcome) {
		t.Errorf("compress outcome %v", r.Outcome)
	}
}
