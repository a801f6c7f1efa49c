package main

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/route/router"
	"github.com/wingman-app/wingate/sdk/abi"
)

var (
	wasmOnce    sync.Once
	wasmVersion *policy.Version
	wasmErr     error
)

// routeVersion builds this plugin for wasip1 and loads it into a real
// policy runtime with the shipped configuration, once per test binary.
func routeVersion(tb testing.TB, cfg []byte) *policy.Version {
	tb.Helper()
	wasm := buildtest.Wasm(tb, ".")
	wasmOnce.Do(func() {
		ctx := context.Background()
		rt, err := policy.NewRuntime(ctx, policy.Options{})
		if err != nil {
			wasmErr = err
			return
		}
		wasmVersion, wasmErr = rt.Load(ctx, policy.Spec{Name: "route", Config: cfg, Deadline: time.Second}, wasm)
	})
	if wasmErr != nil {
		tb.Fatal(wasmErr)
	}
	return wasmVersion
}

// TestWasmCases runs the case files against the built module in the real
// runtime, and checks that it decides exactly as the native router.
func TestWasmCases(t *testing.T) {
	cfg := policytest.ShippedConfig(t, "route")
	v := routeVersion(t, cfg)
	policytest.Run(t, v, filepath.Join("testdata", "cases"))

	c, err := router.ParseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	native, err := router.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"hi", "How do I ask her out?", message500, strings.Repeat("é∑ ", 400)} {
		req := abi.RouteRequest{Message: m, HistoryTokens: 1000}
		got, err := v.Route(context.Background(), &req)
		if err != nil {
			t.Fatal(err)
		}
		// The score may differ in the last bits: math.Exp has an assembly
		// implementation natively and a Go one in WebAssembly.
		if want := native.Decide(&req); got.Tier != want.Tier || got.Reason != want.Reason || math.Abs(got.Score-want.Score) > 1e-9 {
			t.Errorf("wasm %+v, native %+v for %.30q", got, want, m)
		}
	}
}

// message500 is a 500-character chat message with a multi-step request.
var message500 = func() string {
	s := "I have a job interview next week for a product manager role and I tend to ramble when I'm nervous. " +
		"Could you help me prepare? First, list the five questions I'm most likely to be asked, then for each one " +
		"explain what the interviewer wants to hear and give me a short example answer. "
	for len(s) < 500 {
		s += s
	}
	return s[:500]
}()

// BenchmarkRoute500 compares one decision on a 500-character message
// natively and inside WebAssembly through the policy Engine (pool, loop
// guard, watchdog). The target is 20 µs/op for the wasm case.
//
//	go test ./plugins/route -run '^$' -bench Route500
func BenchmarkRoute500(b *testing.B) {
	req := abi.RouteRequest{Message: message500, HistoryTurns: 6, HistoryTokens: 900}
	b.Run("native", func(b *testing.B) {
		rt, err := router.New(router.DefaultConfig, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			rt.Decide(&req)
		}
	})
	b.Run("wasm-engine", func(b *testing.B) {
		e := policy.NewEngine(policy.EngineOptions{})
		if _, err := e.Activate(abi.KindRoute, routeVersion(b, nil)); err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		// Per-call percentiles besides the mean: on a shared machine the
		// mean is dominated by the few calls that lose the CPU.
		ds := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t0 := time.Now()
			if _, r := e.Route(ctx, &req); r.Outcome != policy.OutcomeOK {
				b.Fatal(r.Outcome)
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		if len(ds) > 0 {
			b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds()), "p99-ns")
		}
	})
}
