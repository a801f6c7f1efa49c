package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy/conformance/testguest"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
)

func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// TestPolicyConformanceCommand: a broken module fails with exit 1 and a
// JSON report naming the field; a Rust SDK module passes.
func TestPolicyConformanceCommand(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken.wasm")
	if err := os.WriteFile(broken, testguest.WrongTagCount(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "", "policy", "conformance", "--json", broken)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var rep struct {
		Failed int `json:"failed"`
		Checks []struct {
			Name   string `json:"check"`
			Pass   bool   `json:"pass"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	named := false
	for _, c := range rep.Checks {
		if !c.Pass && strings.Contains(c.Detail, "field tags") {
			named = true
		}
	}
	if rep.Failed == 0 || !named {
		t.Fatalf("no failure naming field tags:\n%s", out)
	}
	code, out, _ = runCLI(t, "", "policy", "conformance", broken)
	if code != 1 || !strings.Contains(out, "FAIL") || !strings.Contains(out, "CHECK") {
		t.Fatalf("table: exit %d\n%s", code, out)
	}

	good := buildtest.Build(t, filepath.Join(repoRoot, "sdk", "rust", "examples", "compress"))
	code, out, _ = runCLI(t, "", "policy", "conformance", good)
	if code != 0 || !strings.Contains(out, "ok   ") || strings.Contains(out, "FAIL") {
		t.Fatalf("compress example: exit %d\n%s", code, out)
	}
}

// TestPolicyBuildAndTestJSON builds the Rust route example, runs its
// cases with --json, and evaluates lines with eval --json.
func TestPolicyBuildAndTestJSON(t *testing.T) {
	buildtest.RequireRust(t)
	dir := filepath.Join(repoRoot, "sdk", "rust", "examples", "route")
	out := filepath.Join(t.TempDir(), "r.wasm")
	code, stdout, stderr := runCLI(t, "", "policy", "build", "-o", out, dir)
	if code != 0 || !strings.Contains(stdout, "built "+out+" (rust, ") {
		t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "policy", "test", "--json", dir)
	var rep caseReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || rep.Passed != 3 || rep.Failed != 0 {
		t.Fatalf("test --json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, `{"message": "hey"}`+"\nnot json\n"+`{"message": "x", "purpose": "assessment"}`+"\n",
		"policy", "eval", "--json", "--kind", "route", "--policy", out)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 1 || len(lines) != 3 || !strings.Contains(lines[0], `"line":1,"decision":{"tier":"economy"`) ||
		!strings.Contains(lines[1], `"line":2,"error":`) || !strings.Contains(lines[2], `"tier":"premium"`) {
		t.Fatalf("eval --json: exit %d\n%s", code, stdout)
	}
	// --watch on a directory of case files is a usage error.
	if code, _, stderr := runCLI(t, "", "policy", "test", "--watch", filepath.Join(dir, "testdata", "cases")); code != 2 || !strings.Contains(stderr, "--watch needs a policy source directory") {
		t.Fatalf("watch on cases: exit %d\n%s", code, stderr)
	}
}

// TestPolicyBuildErrors: no source, and Rust without a toolchain, each
// with a message saying what to do.
func TestPolicyBuildErrors(t *testing.T) {
	code, _, stderr := runCLI(t, "", "policy", "build", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "neither a Go main package nor a Rust crate") {
		t.Fatalf("empty dir: exit %d\n%s", code, stderr)
	}
	t.Setenv("WINGATE_CARGO", filepath.Join(t.TempDir(), "no-cargo"))
	code, _, stderr = runCLI(t, "", "policy", "build", filepath.Join(repoRoot, "plugins", "cache-rs"))
	if code != 1 || !strings.Contains(stderr, "apt-get install -y rustc cargo libstd-rust-dev-wasm32") {
		t.Fatalf("no cargo: exit %d\n%s", code, stderr)
	}
}
