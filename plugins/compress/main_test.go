package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/compress/internal/evaldata"
	"github.com/wingman-app/wingate/sdk"
	"github.com/wingman-app/wingate/sdk/abi"
)

var casesDir = filepath.Join("testdata", "cases")

// TestCases runs the case files natively through the registered handler,
// over the same binary encoding the host uses, with the shipped config.
func TestCases(t *testing.T) {
	if err := sdk.CallInit(policytest.ShippedConfig(t, "compress")); err != nil {
		t.Fatalf("init with the shipped config: %v", err)
	}
	policytest.Run(t, policytest.Funcs{CompressFn: sdk.CallCompress}, casesDir)
}

// TestInitRejectsBadConfig checks that a configuration error reaches the
// host as an init failure rather than a policy running on defaults.
func TestInitRejectsBadConfig(t *testing.T) {
	for _, cfg := range []string{`{"recent_fraction": 2}`, `{"k1": "x"}`, `[1,2]`} {
		if err := sdk.CallInit([]byte(cfg)); err == nil {
			t.Errorf("init(%s) succeeded, want an error", cfg)
		}
	}
	if err := sdk.CallInit(nil); err != nil {
		t.Fatalf("init with no config: %v", err)
	}
}

// buildWasm builds this package for wasip1.
func buildWasm(t testing.TB) []byte {
	t.Helper()
	return buildtest.Wasm(t, ".")
}

// loadWasm loads the module into a runtime of the test's own.
func loadWasm(t testing.TB, config []byte, deadline time.Duration) *policy.Version {
	t.Helper()
	wasm := buildWasm(t)
	ctx := context.Background()
	rt, err := policy.NewRuntime(ctx, policy.Options{CacheDir: filepath.Join(os.TempDir(), "wingate-compress-test-cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) })
	v, err := rt.Load(ctx, policy.Spec{Name: "compress", Config: config, Deadline: deadline, MinInstances: 1, MaxInstances: 2}, wasm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	if !v.Handles(abi.KindCompress) {
		t.Fatalf("module handles %v, not compress", v.Kinds())
	}
	return v
}

// TestWasmCases runs the case files through the built module in the
// policy runtime, and checks that the module decides exactly as the
// native code does on a long synthetic history.
func TestWasmCases(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the wasm build in -short mode")
	}
	v := loadWasm(t, policytest.ShippedConfig(t, "compress"), time.Second)
	policytest.Run(t, v, casesDir)

	msgs, queries := evaldata.Synthetic(700)
	if err := sdk.CallInit(policytest.ShippedConfig(t, "compress")); err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		req := abi.CompressRequest{Messages: msgs, Query: q, BudgetTokens: 2500}
		got, err := v.Compress(t.Context(), &req)
		if err != nil {
			t.Fatalf("wasm: %v", err)
		}
		want, err := sdk.CallCompress(req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Keep, want.Keep) || got.Summary != want.Summary || got.Tokens != want.Tokens {
			t.Errorf("%q: wasm decision differs from native: keep %d vs %d, tokens %d vs %d",
				q, len(got.Keep), len(want.Keep), got.Tokens, want.Tokens)
		}
	}
}

// withConfig returns the shipped config with one field set.
func withConfig(t testing.TB, field string, value any) []byte {
	t.Helper()
	m := map[string]any{}
	if raw := policytest.ShippedConfig(t, "compress"); len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
	}
	m[field] = value
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkWasmCompress700 is one decision through the policy runtime (pool,
// deadline, binary boundary, loop guard) over a 700-turn history at a 10%
// budget: LoCoMo's longest conversation (680 turns) when present, else a
// synthetic one, with rotating questions. "cold" has the memo off, so every
// decision analyses the whole history; "warm" is the shipped config, where
// an instance remembers the messages it has seen. Target: p50 at most 5 ms.
func BenchmarkWasmCompress700(b *testing.B) {
	msgs, queries := evaldata.Synthetic(700)
	if convs, err := evaldata.LoCoMo(); err == nil {
		longest := convs[0]
		for _, c := range convs {
			if len(c.Msgs) > len(longest.Msgs) {
				longest = c
			}
		}
		msgs, queries = longest.Msgs, nil
		for _, q := range longest.Questions {
			queries = append(queries, q.Text)
		}
		b.Logf("history: LoCoMo %s, %d turns", longest.ID, len(msgs))
	}
	var total uint32
	for _, m := range msgs {
		total += m.Tokens
	}
	for _, mode := range []string{"cold", "warm"} {
		b.Run(mode, func(b *testing.B) {
			config := policytest.ShippedConfig(b, "compress")
			if mode == "cold" {
				config = withConfig(b, "memo_messages", 0)
			}
			v := loadWasm(b, config, time.Second)
			ctx := context.Background()
			var times []time.Duration
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req := abi.CompressRequest{Messages: msgs, Query: queries[i%len(queries)], BudgetTokens: total / 10}
				start := time.Now()
				if _, err := v.Compress(ctx, &req); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
				i++
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(times[0].Microseconds())/1000, "min-ms")
		})
	}
}
