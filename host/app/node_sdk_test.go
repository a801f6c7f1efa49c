package app

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nodeSDKPackage is the directory of the Node SDK test: package.json and
// package-lock.json pin OpenAI's Node SDK, sdk_test.mjs drives the server
// with it.
const nodeSDKPackage = "testdata/node-sdk"

// nodeSDKCases are the cases sdk_test.mjs always runs; each must report.
var nodeSDKCases = []string{"models", "chat", "streaming", "tools round trip", "unknown model",
	"unsupported parameter", "max_tokens truncation", "unknown path", "revoked key", "exhausted key"}

// nodeTools finds node (20 or later, the oldest the SDK supports) and
// npm. Without them the test fails under CI=true and is skipped, saying
// so, elsewhere.
func nodeTools(t *testing.T) (node, npm string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (the Node SDK test needs Node.js 20 or later and npm)")
		}
		t.Skip(msg + ": install Node.js 20 or later and npm to run the Node SDK test")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	npm, err = exec.LookPath("npm")
	if err != nil {
		missing("npm is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	v := strings.TrimSpace(string(out))
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < 20 {
		missing("node is %s", v)
	}
	return node, npm
}

// nodeSDKModules returns a directory whose node_modules is what `npm ci`
// installs from the test's lock file, and the SDK version installed. It
// lives in the user's cache directory under the hash of package.json and
// the lock, so a second run downloads nothing and a changed lock gets a
// directory of its own. npm installs into a fresh directory that is
// renamed into place once complete: a directory under the hash is never
// half filled, whether an install was interrupted or raced another.
func nodeSDKModules(t *testing.T, npm string) (dir, version string) {
	t.Helper()
	pkg, err := os.ReadFile(filepath.Join(nodeSDKPackage, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile(filepath.Join(nodeSDKPackage, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	var locked struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(lock, &locked); err != nil {
		t.Fatalf("package-lock.json: %v", err)
	}
	want := locked.Packages["node_modules/openai"].Version
	if want == "" {
		t.Fatal("package-lock.json pins no version of openai")
	}
	// installed is the SDK version under d, "" when there is none.
	installed := func(d string) string {
		b, err := os.ReadFile(filepath.Join(d, "node_modules", "openai", "package.json"))
		var p struct {
			Version string `json:"version"`
		}
		if err != nil || json.Unmarshal(b, &p) != nil {
			return ""
		}
		return p.Version
	}

	sum := sha256.New()
	sum.Write(pkg)
	sum.Write([]byte{0})
	sum.Write(lock)
	root, err := os.UserCacheDir()
	if err != nil {
		root = os.TempDir()
	}
	root = filepath.Join(root, "wingate-node-sdk")
	dir = filepath.Join(root, hex.EncodeToString(sum.Sum(nil))[:16])
	if v := installed(dir); v == want {
		t.Logf("openai %s from %s", v, dir)
		return dir, v
	} else if v != "" || dirExists(dir) {
		// Not what the lock says: only a hand could have changed it.
		t.Logf("%s holds openai %q, not %s: installing again", dir, v, want)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}

	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(root, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp) // gone once renamed; what is left of a failed install
	for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s (%s): %v\n%s", tmp, time.Since(began).Round(time.Millisecond), err, out)
	}
	if v := installed(tmp); v != want {
		t.Fatalf("npm ci installed openai %q, the lock says %s", v, want)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another run got there first: its install serves as well.
		if v := installed(dir); v != want {
			t.Fatalf("moving the install into place: %v", err)
		}
	}
	t.Logf("npm ci installed openai %s into %s in %s", want, dir, time.Since(began).Round(time.Millisecond))
	return dir, want
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// nodeSDKResult is one line sdk_test.mjs prints: a case and how it went.
type nodeSDKResult struct {
	Case   string `json:"case"`
	OK     *bool  `json:"ok"`
	Detail any    `json:"detail"`
}

// TestOpenAINodeSDKAgainstServe drives the OpenAI-compatible surface of
// the server as `wingate serve` assembles it with OpenAI's own Node SDK
// (the version package-lock.json pins), the cases
// TestOpenAISDKAgainstServe runs with the Go SDK: what the Node SDK
// reads, accumulates from a stream and throws (its error classes by
// status, with code and param) is the wire format checked from a second
// client.
func TestOpenAINodeSDKAgainstServe(t *testing.T) {
	node, npm := nodeTools(t)
	modules, version := nodeSDKModules(t, npm)
	a, base := listening(t, nil, nil)
	// A revoked virtual key and one whose budget is spent, issued and
	// revoked through the admin API.
	revoked := createKey(t, opsBase(a), `{"name": "node-revoked"}`)
	if r := call(t, "POST", opsBase(a)+"/admin/keys/"+revoked.ID+"/revoke", "", "Authorization", "Bearer "+testAdminToken); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	exhausted := createKey(t, opsBase(a), `{"name": "node-exhausted", "budget_usd": 0.000001}`)

	// The script runs from a directory of its own whose node_modules is
	// the cached install: Node resolves an ES module's imports from the
	// script's directory up, never from NODE_PATH.
	work := t.TempDir()
	script, err := os.ReadFile(filepath.Join(nodeSDKPackage, "sdk_test.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "sdk_test.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(modules, "node_modules"), filepath.Join(work, "node_modules")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "sdk_test.mjs")
	cmd.Dir = work
	// Only the settings given here: none of the caller's WINGATE_ or
	// OPENAI_ variables (a key, a base URL, an organization) leaks in.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WINGATE_") && !strings.HasPrefix(kv, "OPENAI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "WINGATE_BASE_URL="+base+"/v1", "WINGATE_API_KEY="+strings.TrimPrefix(bearer(t, 1), "Bearer "),
		"WINGATE_REVOKED_KEY="+revoked.Secret, "WINGATE_EXHAUSTED_KEY="+exhausted.Secret)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	began := time.Now()
	runErr := cmd.Run()
	took := time.Since(began).Round(time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("node sdk_test.mjs did not finish in %s\nstdout:\n%s\nstderr:\n%s", took, &stdout, &stderr)
	}

	seen := map[string]int{}
	failed := 0
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r nodeSDKResult
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Case == "" || r.OK == nil {
			t.Errorf("sdk_test.mjs printed %q, not a case's result", line)
			continue
		}
		seen[r.Case]++
		if *r.OK {
			t.Logf("%s: %v", r.Case, r.Detail)
		} else {
			failed++
			t.Errorf("Node SDK %s, %s: %v", version, r.Case, r.Detail)
		}
	}
	for _, c := range nodeSDKCases {
		if seen[c] != 1 {
			t.Errorf("case %q reported %d times, want once", c, seen[c])
		}
	}
	for c, n := range seen {
		if !slices.Contains(nodeSDKCases, c) {
			t.Errorf("case %q reported %d times, not one of this test's", c, n)
		}
	}
	var exit *exec.ExitError
	switch {
	case runErr == nil && failed > 0:
		t.Errorf("sdk_test.mjs exited 0 with %d failed cases", failed)
	case runErr != nil && (failed == 0 || !errors.As(runErr, &exit)):
		t.Errorf("node sdk_test.mjs: %v\nstderr:\n%s", runErr, &stderr)
	case stderr.Len() > 0:
		t.Logf("stderr:\n%s", &stderr)
	}
	t.Logf("openai %s (Node SDK): %d cases in %s", version, len(seen), took)
}
