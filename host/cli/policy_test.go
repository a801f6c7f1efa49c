package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The test policy (testdata/policy) is built once per test run.
var (
	testPolicyOnce sync.Once
	testPolicyPath string
	testPolicyErr  error
)

func testPolicy(t *testing.T) string {
	t.Helper()
	testPolicyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wingate-cli-test-")
		if err != nil {
			testPolicyErr = err
			return
		}
		out := filepath.Join(dir, "policy.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./testdata/policy")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			testPolicyErr = fmt.Errorf("build test policy: %v\n%s", err, b)
			return
		}
		testPolicyPath = out
	})
	if testPolicyErr != nil {
		t.Fatal(testPolicyErr)
	}
	return testPolicyPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testPolicyPath != "" {
		os.RemoveAll(filepath.Dir(testPolicyPath))
	}
	os.Exit(code)
}

// run runs the wingate command in process.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyEval(t *testing.T) {
	wasm := testPolicy(t)
	premium := writeTemp(t, "config.json", `{"tier": "premium"}`)
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{
			name:  "route lines in order, blank lines skipped",
			args:  []string{"--kind", "route"},
			stdin: "{\"message\":\"hey\"}\n\n{\"message\":\"how do I start a conversation at a party?\"}\n{\"message\":\"x\",\"purpose\":\"assessment\"}\n",
			wantOut: `{"tier":"economy","score":0.1,"reason":"short"}` + "\n" +
				`{"tier":"standard","score":0.6,"reason":"long"}` + "\n" +
				`{"tier":"premium","score":0.9,"reason":"assessment"}` + "\n",
		},
		{
			name:    "configuration reaches the policy",
			args:    []string{"--kind", "route", "--config", premium},
			stdin:   `{"message":"how do I start a conversation at a party?"}`,
			wantOut: `{"tier":"premium","score":0.6,"reason":"long"}` + "\n",
		},
		{
			name:    "cache",
			args:    []string{"--kind", "cache"},
			stdin:   `{"method":"GET","route":"/api/users/:id/reputation","path":"/api/users/42/reputation","query":"","user":"42"}` + "\n" + `{"method":"POST","path":"/api/location","user":"42"}`,
			wantOut: `{"action":"lookup","key":"/api/users/42/reputation","ttl_s":60,"scope":"user","stale_s":0,"tags":["user:42"]}` + "\n" + `{"action":"bypass","key":"","ttl_s":0,"scope":"global","stale_s":0,"tags":[]}` + "\n",
		},
		{
			name:    "compress keeps ids",
			args:    []string{"--kind", "compress"},
			stdin:   `{"messages":[{"id":"a","role":"user","text":"x","tokens":5},{"id":"b","role":"assistant","text":"y","tokens":5},{"id":"c","role":"user","text":"z","tokens":5}],"query":"q","budget_tokens":12}`,
			wantOut: `{"keep":["b","c"],"summary":"","tokens":10}` + "\n",
		},
		{
			name:     "bad line names its number, earlier output kept",
			args:     []string{"--kind", "route"},
			stdin:    "{\"message\":\"hey\"}\n{\"message\":\"hi\",\"purpose\":\"gossip\"}\n{\"message\":\"never\"}\n",
			wantCode: 1,
			wantOut:  `{"tier":"economy","score":0.1,"reason":"short"}` + "\n",
			wantErr:  "line 2: evaljson: invalid input: purpose",
		},
		{
			name:     "policy error names the line",
			args:     []string{"--kind", "route"},
			stdin:    `{"message":"panic"}`,
			wantCode: 1,
			wantErr:  "line 1:",
		},
		{
			name:     "unknown kind",
			args:     []string{"--kind", "weather"},
			wantCode: 2,
			wantErr:  `--kind "weather"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"policy", "eval", "--policy", wasm}, tt.args...)
			code, out, errOut := run(t, tt.stdin, args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.wantErr)
			}
		})
	}
}

func TestPolicyEvalUsage(t *testing.T) {
	code, _, errOut := run(t, "", "policy", "eval", "--kind", "route")
	if code != 2 || !strings.Contains(errOut, "--policy are required") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, "", "policy", "frobnicate")
	if code != 2 || !strings.Contains(errOut, "eval") || !strings.Contains(errOut, "test") {
		t.Errorf("unknown subcommand: code %d, stderr %q", code, errOut)
	}
}

func TestPolicyTest(t *testing.T) {
	wasm := testPolicy(t)
	economy := writeTemp(t, "config.json", `{"tier": "economy"}`)

	code, out, errOut := run(t, "", "policy", "test", "--policy", wasm, "testdata/cases")
	if code != 0 || !strings.Contains(out, "ok") || !strings.Contains(out, "3 cases passed") {
		t.Errorf("passing cases: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	code, out, _ = run(t, "", "policy", "test", "--policy", wasm, "--config", economy, "testdata/cases")
	for _, want := range []string{
		"FAIL route.json: long follows the configured tier (route)",
		`tier: got "economy", want "standard"`,
		"1 of 3 cases failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("failing cases: stdout does not contain %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("failing cases: exit code %d, want 1", code)
	}
}

func TestPolicyTestFindsThePolicyOfTheKind(t *testing.T) {
	wasm := testPolicy(t)
	dir := t.TempDir()
	b, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "r.wasm"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	pf := `{"policies":[{"kind":"route","name":"r","file":"r.wasm","config":{"tier":"economy"}}]}`
	if err := os.WriteFile(filepath.Join(dir, "policies.json"), []byte(pf), 0o644); err != nil {
		t.Fatal(err)
	}
	// The policies file's configuration makes long messages economy.
	code, out, errOut := run(t, "", "policy", "test", "--policy-dir", dir, "testdata/cases")
	if code != 1 || !strings.Contains(out, `tier: got "economy", want "standard"`) {
		t.Errorf("code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, _, errOut = run(t, "", "policy", "test", "--policy-dir", t.TempDir(), "testdata/cases")
	if code != 1 || !strings.Contains(errOut, "no policy for kind route") {
		t.Errorf("empty dir: code %d, stderr %q", code, errOut)
	}
}

// TestBuiltPlugins runs each default plugin's case files against its
// built module, the way `task policy-test` does, and evaluates one line
// of each kind. The modules are built by `go generate ./policies` (the
// first half of the test command); a plugin not built is skipped.
func TestBuiltPlugins(t *testing.T) {
	inputs := map[string]string{
		"cache":    `{"method":"GET","route":"/api/challenges","path":"/api/challenges","query":"","user":""}`,
		"route":    `{"message":"hey, how are you?","purpose":"chat","history_turns":0,"history_tokens":0}`,
		"compress": `{"messages":[{"id":"a","role":"user","text":"I am shy at parties","tokens":6},{"id":"b","role":"assistant","text":"Let's practise","tokens":4}],"query":"what next?","budget_tokens":100}`,
	}
	wantKeys := map[string][]string{
		"cache":    {`"action":`, `"ttl_s":`, `"scope":`, `"tags":`},
		"route":    {`"tier":`, `"score":`, `"reason":`},
		"compress": {`"keep":`, `"summary":`, `"tokens":`},
	}
	policies := filepath.Join("..", "..", "policies")
	for kind, input := range inputs {
		t.Run(kind, func(t *testing.T) {
			wasm := filepath.Join(policies, kind+".wasm")
			if _, err := os.Stat(wasm); err != nil {
				t.Skipf("%s not built (go generate ./policies)", wasm)
			}
			cases := filepath.Join("..", "..", "plugins", kind, "testdata", "cases")
			if _, err := os.Stat(cases); err == nil {
				code, out, errOut := run(t, "", "policy", "test", "--policy-dir", policies, "--kind", kind, cases)
				if code != 0 || !strings.Contains(out, "cases passed") {
					t.Errorf("policy test %s: exit %d\n%s\n%s", cases, code, out, errOut)
				}
			}
			code, out, errOut := run(t, input+"\n"+input+"\n", "policy", "eval", "--kind", kind, "--policy", wasm)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if code != 0 || len(lines) != 2 || lines[0] != lines[1] {
				t.Fatalf("policy eval: exit %d, %d lines (want 2 identical)\n%s\n%s", code, len(lines), out, errOut)
			}
			for _, k := range wantKeys[kind] {
				if !strings.Contains(lines[0], k) {
					t.Errorf("decision %s lacks %s", lines[0], k)
				}
			}
		})
	}
}
