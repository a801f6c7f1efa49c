package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/cache/rules"
	"github.com/wingman-app/wingate/sdk/abi"
)

// TestCases runs the case files against the policy as configured in the
// policies file.
func TestCases(t *testing.T) {
	p, err := rules.Parse(policytest.ShippedConfig(t, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	policytest.Run(t, policytest.Funcs{CacheFn: func(r abi.CacheRequest) (abi.CacheDecision, error) {
		return p.Decide(&r), nil
	}}, filepath.Join("testdata", "cases"))
}

// TestDefaultsMatchPoliciesFile: the shipped configuration and the
// built-in defaults give the same decisions on the cases.
func TestDefaultsMatchPoliciesFile(t *testing.T) {
	cases, err := policytest.LoadDir(filepath.Join("testdata", "cases"))
	if err != nil {
		t.Fatal(err)
	}
	def, err := rules.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	res := policytest.RunAll(context.Background(), policytest.Funcs{CacheFn: func(r abi.CacheRequest) (abi.CacheDecision, error) {
		return def.Decide(&r), nil
	}}, abi.KindCache, cases)
	for _, r := range res {
		if r.Err != nil || len(r.Diffs) > 0 {
			t.Errorf("defaults: %+v", r)
		}
	}
}
