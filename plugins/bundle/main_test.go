package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk"
	"github.com/wingman-app/wingate/sdk/abi"
)

// reset forgets every kind's configuration (the handlers' state is the
// package's, shared by the tests).
func reset() { cachePolicy, routePolicy, compressPolicy = nil, nil, nil }

// casesOf is the case files directory of the plugin of kind.
func casesOf(kind string) string { return filepath.Join("..", kind, "testdata", "cases") }

// TestCases: configured with each kind's shipped configuration, the
// bundle decides that kind's case files as the kind's own plugin does
// (natively, through the same encoding as the host), and only that
// kind.
func TestCases(t *testing.T) {
	for _, kind := range []string{"cache", "route", "compress"} {
		t.Run(kind, func(t *testing.T) {
			reset()
			if err := sdk.CallInit(policytest.ShippedConfig(t, kind)); err != nil {
				t.Fatalf("init with the shipped %s configuration: %v", kind, err)
			}
			if got := configured(); len(got) != 1 || got[0] != kind {
				t.Fatalf("the %s configuration configured %v", kind, got)
			}
			policytest.Run(t, policytest.Funcs{CacheFn: sdk.CallCache, RouteFn: sdk.CallRoute, CompressFn: sdk.CallCompress}, casesOf(kind))
		})
	}
}

func configured() []string {
	var out []string
	if cachePolicy != nil {
		out = append(out, "cache")
	}
	if routePolicy != nil {
		out = append(out, "route")
	}
	if compressPolicy != nil {
		out = append(out, "compress")
	}
	return out
}

// TestConfigurations: an empty configuration is every kind's defaults;
// one no kind's parser accepts is refused with each parser's reason; a
// decision of a kind the instance has no configuration of fails (the
// host serves that kind's fallback).
func TestConfigurations(t *testing.T) {
	reset()
	if err := sdk.CallInit(nil); err != nil {
		t.Fatalf("empty configuration: %v", err)
	}
	if got := configured(); len(got) != 3 {
		t.Errorf("the empty configuration configured %v, want every kind", got)
	}
	reset()
	err := sdk.CallInit([]byte(`{"no_such_setting": 1}`))
	if err == nil {
		t.Fatal("a configuration of no kind was accepted")
	}
	for _, want := range []string{"not a cache configuration", "not a route configuration", "not a compress configuration", "no_such_setting"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if err := sdk.CallInit([]byte(`{"rules": []}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := sdk.CallRoute(abi.RouteRequest{Message: "hello"}); err == nil {
		t.Error("a route decision from an instance configured for cache alone succeeded")
	}
}

// TestWasmServesEveryKind builds the bundle for wasip1 and loads it once
// per kind with the shipped configurations into a real runtime, as
// policies.json does: the three versions share one compiled module and
// decide their kind's case files.
func TestWasmServesEveryKind(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and compiles the bundle")
	}
	wasm := buildtest.Wasm(t, ".")
	ctx := context.Background()
	rt, err := policy.NewRuntime(ctx, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	for _, kind := range []string{"cache", "route", "compress"} {
		v, err := rt.Load(ctx, policy.Spec{Name: kind, Config: policytest.ShippedConfig(t, kind), Deadline: time.Second, MinInstances: 1}, wasm)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		defer v.Close()
		t.Run(kind, func(t *testing.T) { policytest.Run(t, v, casesOf(kind)) })
	}
}
