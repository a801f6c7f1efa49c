package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy/conformance/testguest"
	"github.com/wingman-app/wingate/host/policy/policybuild"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

const repo = "../../.."

func mustPass(t *testing.T, wasm []byte, opts Options) *Report {
	t.Helper()
	rep, err := Run(context.Background(), wasm, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Fatalf("%s does not conform:\n%s", opts.Name, b.String())
	}
	return rep
}

// TestShippedPoliciesConform: the Go SDK's output (the three default
// policies, with their shipped configuration) and the Rust SDK's (the
// Rust cache policy and the route and compress examples) pass every
// check, and the checks cover every declared kind.
func TestShippedPoliciesConform(t *testing.T) {
	for _, c := range []struct {
		dir, kind string
		shipped   bool
		min       int
	}{
		{"plugins/cache", "cache", true, 15},
		{"plugins/route", "route", true, 15},
		{"plugins/compress", "compress", true, 15},
		{"plugins/cache-rs", "cache", true, 15},
		{"sdk/rust/examples/route", "route", false, 15},
		{"sdk/rust/examples/compress", "compress", false, 15},
	} {
		t.Run(strings.ReplaceAll(c.dir, "/", "_"), func(t *testing.T) {
			t.Parallel()
			wasm, err := os.ReadFile(buildtest.Build(t, filepath.Join(repo, c.dir)))
			if err != nil {
				t.Fatal(err)
			}
			var cfg []byte
			if c.shipped {
				cfg = policytest.ShippedConfig(t, c.kind)
			}
			rep := mustPass(t, wasm, Options{Name: c.dir, Config: cfg})
			if len(rep.Kinds) != 1 || rep.Kinds[0] != c.kind {
				t.Errorf("kinds %v, want [%s]", rep.Kinds, c.kind)
			}
			golden := 0
			for _, ch := range rep.Checks {
				if strings.HasPrefix(ch.Name, "golden "+c.kind+"_request/") {
					golden++
				}
			}
			if golden < 4 || rep.Passed < c.min {
				t.Errorf("%d golden checks, %d checks in all: too few", golden, rep.Passed)
			}
		})
	}
}

// TestRustWASITargetConforms: the Rust SDK also builds for wasm32-wasi,
// whose module imports WASI calls from the host's allowlist, and passes.
func TestRustWASITargetConforms(t *testing.T) {
	buildtest.RequireRust(t)
	out := filepath.Join(t.TempDir(), "route-wasi.wasm")
	if _, err := policybuild.Build(context.Background(), filepath.Join(repo, "sdk/rust/examples/route"), out, policybuild.Options{RustTarget: "wasm32-wasi"}); err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(wasm, []byte("wasi_snapshot_preview1")) {
		t.Error("a wasm32-wasi module without WASI imports: the wrong target was built")
	}
	mustPass(t, wasm, Options{Name: "route-wasi"})
}

// failure returns the failed check whose name starts with name.
func failure(t *testing.T, rep *Report, name string) Check {
	t.Helper()
	for _, c := range rep.Failures() {
		if strings.HasPrefix(c.Name, name) {
			return c
		}
	}
	var b bytes.Buffer
	rep.WriteTable(&b)
	t.Fatalf("no failed check %q:\n%s", name, b.String())
	return Check{}
}

// TestBrokenModulesFail: each deliberately broken guest fails, with a
// message naming its problem.
func TestBrokenModulesFail(t *testing.T) {
	ctx := context.Background()
	run := func(wasm []byte) *Report {
		rep, err := Run(ctx, wasm, Options{Name: "broken"})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			t.Fatal("a broken module passed")
		}
		return rep
	}

	// A wrong result encoding: two tags announced, one sent.
	rep := run(testguest.WrongTagCount())
	c := failure(t, rep, "golden cache_request/typical")
	for _, want := range []string{"cache decision", "field tags", "count 2"} {
		if !strings.Contains(c.Detail, want) {
			t.Errorf("wrong tag count: %q does not say %q", c.Detail, want)
		}
	}

	// An input buffer past the end of memory, found when the first
	// input (the configuration) is written.
	rep = run(testguest.BufferPastMemory())
	c = failure(t, rep, "init: configuration accepted")
	if !strings.Contains(c.Detail, "wingate_buffer(4096) returned 0x1fff0: the range ends past memory") {
		t.Errorf("buffer past memory: %q", c.Detail)
	}

	// A trap instead of an error status on empty input.
	rep = run(testguest.TrapsOnEmptyInput())
	c = failure(t, rep, "refuses empty input")
	if !strings.Contains(c.Detail, "wingate_decide(2, 0) trapped") || !strings.Contains(c.Detail, "unreachable") {
		t.Errorf("trap on empty input: %q", c.Detail)
	}
	// ... and its fixed decision for malformed input is named too.
	c = failure(t, rep, "refuses trailing byte")
	if !strings.Contains(c.Detail, "was decided (status ok)") {
		t.Errorf("trailing byte: %q", c.Detail)
	}
}

// TestReportJSON: the JSON report carries every check and the counts.
func TestReportJSON(t *testing.T) {
	rep, err := Run(context.Background(), testguest.WrongTagCount(), Options{Name: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Failed != rep.Failed || back.Passed != rep.Passed || len(back.Checks) != len(rep.Checks) || back.Failed == 0 {
		t.Fatalf("round trip: %+v vs %+v", back, rep)
	}
}

// TestFieldChecksAcceptGoldenDecisions: every golden decision passes the
// field-by-field checks, and each truncation or extension of one fails
// naming a field, exactly when package abi refuses it too.
func TestFieldChecksAcceptGoldenDecisions(t *testing.T) {
	bigReq := &abi.CompressRequest{BudgetTokens: 1 << 30}
	for i := 0; i < 300; i++ {
		bigReq.Messages = append(bigReq.Messages, abi.Message{Tokens: 0})
	}
	checks := map[string]func([]byte) error{
		"cache_decision.json":    checkCacheDecision,
		"route_decision.json":    checkRouteDecision,
		"compress_decision.json": func(b []byte) error { return checkCompressDecision(b, bigReq) },
	}
	for file, check := range checks {
		vs, err := abi.GoldenVectors(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			b, _ := v.Bytes()
			if err := check(b); err != nil {
				t.Errorf("%s/%s: %v", file, v.Name, err)
			}
			for n := 0; n < len(b); n++ {
				err := check(b[:n])
				if err == nil || !strings.Contains(err.Error(), "field ") {
					t.Errorf("%s/%s cut at %d: %v", file, v.Name, n, err)
				}
			}
			if err := check(append(append([]byte(nil), b...), 0)); err == nil || !strings.Contains(err.Error(), "after the last field") {
				t.Errorf("%s/%s plus a byte: %v", file, v.Name, err)
			}
		}
	}
}

// FuzzFieldChecks: on any bytes the field checks never panic and accept
// exactly what the host's decoders accept (with the host's extra rules).
func FuzzFieldChecks(f *testing.F) {
	for _, file := range []string{"cache_decision.json", "route_decision.json", "compress_decision.json"} {
		vs, _ := abi.GoldenVectors(file)
		for _, v := range vs {
			b, _ := v.Bytes()
			f.Add(b)
		}
	}
	req := &abi.CompressRequest{BudgetTokens: 1 << 20}
	for i := 0; i < 8; i++ {
		req.Messages = append(req.Messages, abi.Message{Tokens: uint32(i)})
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var cd abi.CacheDecision
		hostErr := abi.DecodeCacheDecision(b, &cd)
		if hostErr == nil && cd.Action == abi.CacheLookup && cd.Key == "" {
			hostErr = errEmptyKey
		}
		if err := checkCacheDecision(b); (err == nil) != (hostErr == nil) {
			t.Fatalf("cache %x: field check %v, host %v", b, err, hostErr)
		}
		var rd abi.RouteDecision
		hostErr = abi.DecodeRouteDecision(b, &rd)
		if err := checkRouteDecision(b); (err == nil) != (hostErr == nil) {
			t.Fatalf("route %x: field check %v, host %v", b, err, hostErr)
		}
		var pd abi.CompressDecision
		hostErr = abi.DecodeCompressDecision(b, &pd)
		err := checkCompressDecision(b, req)
		if hostErr != nil && err == nil {
			t.Fatalf("compress %x: accepted what the host refuses (%v)", b, hostErr)
		}
	})
}

var errEmptyKey = os.ErrInvalid
