package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/host/policy"
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
	f, err := policy.ParsePoliciesFile(b)
	if err != nil {
		t.Fatalf("policies.json: %v", err)
	}
	for _, p := range f.Policies {
		if p.Kind == "route" {
			return []byte(p.Config)
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

// TestDefaultsMatchPoliciesFile: the shipped configuration parses, states
// the built-in defaults, and the defaults pass the same cases.
func TestDefaultsMatchPoliciesFile(t *testing.T) {
	c, err := router.ParseConfig(policyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if c != router.DefaultConfig {
		t.Errorf("policies.json route config %+v differs from router.DefaultConfig %+v: update one of them", c, router.DefaultConfig)
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
