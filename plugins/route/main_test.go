package main

import (
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/route/router"
	"github.com/wingman-app/wingate/sdk"
	"github.com/wingman-app/wingate/sdk/abi"
)

// TestCases runs the case files through the SDK's binary encoding, as the
// host calls the module, with the shipped configuration.
func TestCases(t *testing.T) {
	if err := sdk.CallInit(policytest.ShippedConfig(t, "route")); err != nil {
		t.Fatal(err)
	}
	policytest.Run(t, policytest.Funcs{RouteFn: sdk.CallRoute}, filepath.Join("testdata", "cases"))
}

// TestDefaultsMatchPoliciesFile: the shipped configuration parses, states
// the built-in defaults, and the defaults pass the same cases.
func TestDefaultsMatchPoliciesFile(t *testing.T) {
	c, err := router.ParseConfig(policytest.ShippedConfig(t, "route"))
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
