package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/route/router"
	"github.com/wingman-app/wingate/sdk"
	"github.com/wingman-app/wingate/sdk/abi"
)

// policyConfig returns the config of the route entry of
// policies/policies.json, or nil (the defaults) when there is none yet.
func policyConfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "policies", "policies.json"))
	if err != nil {
		t.Logf("policies file not readable (%v): using the defaults", err)
		return nil
	}
	var f struct {
		Policies []struct {
			Kind   string          `json:"kind"`
			Config json.RawMessage `json:"config"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("policies.json: %v", err)
	}
	for _, p := range f.Policies {
		if p.Kind == "route" {
			return p.Config
		}
	}
	t.Log("policies.json has no route entry: using the defaults")
	return nil
}

// TestCases runs the case files through the SDK's binary encoding, as the
// host calls the module, with the shipped configuration.
func TestCases(t *testing.T) {
	if err := sdk.CallInit(policyConfig(t)); err != nil {
		t.Fatal(err)
	}
	policytest.Run(t, policytest.Funcs{RouteFn: sdk.CallRoute}, filepath.Join("testdata", "cases"))
}

// TestDefaultsMatchPoliciesFile: the shipped configuration parses and the
// built-in defaults pass the same cases.
func TestDefaultsMatchPoliciesFile(t *testing.T) {
	if _, err := router.ParseConfig(policyConfig(t)); err != nil {
		t.Fatal(err)
	}
	rt, err := router.New(router.DefaultConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	policytest.Run(t, policytest.Funcs{RouteFn: func(r abi.RouteRequest) (abi.RouteDecision, error) {
		return rt.Decide(&r), nil
	}}, filepath.Join("testdata", "cases"))
}

// TestInitRejectsBadConfig: a misspelt or out-of-range setting makes init
// fail, so the host refuses the policy instead of running it misconfigured.
func TestInitRejectsBadConfig(t *testing.T) {
	for _, cfg := range []string{
		`{"economy_below": 2}`,
		`{"economy_bellow": 0.2}`,
		`{"assessment_min_tier": "gold"}`,
		`[1, 2]`,
	} {
		if err := sdk.CallInit([]byte(cfg)); err == nil {
			t.Errorf("init(%s) succeeded, want an error", cfg)
		}
	}
	if err := sdk.CallInit(nil); err != nil {
		t.Fatal(err)
	}
}
