package cli

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
)

var watchEdits = flag.Int("watch-edits", 2, "edits per language in TestPolicyTestWatchLatency; 10 also checks the median ≤ 3 s and maximum ≤ 5 s")

const repoRoot = "../.."

// watchGoSource is a small Go route policy whose economy reason is R.
const watchGoSource = `package main

import "github.com/wingman-app/wingate/sdk"

func init() {
	sdk.HandleRoute(func(req sdk.RouteRequest) (sdk.RouteDecision, error) {
		if req.Purpose == sdk.PurposeAssessment {
			return sdk.RouteDecision{Tier: sdk.TierPremium, Score: 0.9, Reason: "assessment"}, nil
		}
		return sdk.RouteDecision{Tier: sdk.TierEconomy, Score: 0.1, Reason: "R"}, nil
	})
}

func main() {}
`

const watchCases = `[
  {"name": "small talk", "input": {"message": "hey"}, "want": {"tier": "economy", "reason": "small talk"}},
  {"name": "assessment", "input": {"message": "how am I doing?", "purpose": "assessment"}, "want": {"tier": "premium"}}
]`

// watchSubject is a policy source directory the test edits: write sets
// the economy reason.
type watchSubject struct {
	dir   string
	write func(reason string)
}

func goWatchSubject(t *testing.T) watchSubject {
	// Inside the module (an _-prefixed directory, which ./... skips) so
	// that go build resolves the SDK.
	dir, err := os.MkdirTemp(repoRoot, "_watchtest-go-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mustWrite(t, filepath.Join(dir, "testdata", "cases", "basic.json"), watchCases)
	return watchSubject{dir: dir, write: func(reason string) {
		mustWrite(t, filepath.Join(dir, "main.go"), strings.Replace(watchGoSource, `"R"`, fmt.Sprintf("%q", reason), 1))
	}}
}

func rustWatchSubject(t *testing.T) watchSubject {
	buildtest.RequireRust(t)
	dir := t.TempDir()
	sdk, err := filepath.Abs(filepath.Join(repoRoot, "sdk", "rust"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(sdk, "examples", "route", "src", "lib.rs"))
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(sdk, "examples", "route", "Cargo.toml"))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "Cargo.toml"), strings.Replace(string(manifest), `path = "../.."`, fmt.Sprintf("path = %q", sdk), 1))
	mustWrite(t, filepath.Join(dir, "testdata", "cases", "basic.json"), watchCases)
	return watchSubject{dir: dir, write: func(reason string) {
		mustWrite(t, filepath.Join(dir, "src", "lib.rs"), strings.Replace(string(src), `"small talk"`, fmt.Sprintf("%q", reason), 1))
	}}
}

func mustWrite(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyTestWatchLatency edits a Go and a Rust policy under `policy
// test --watch` and times each edit until its verdict line is printed.
// Edits alternate between a reason the cases want and one they do not,
// so each verdict (ok, then FAIL, ...) is checked to be the edit's own.
// With -watch-edits=10 (go test ./host/cli -run WatchLatency -v -args
// -watch-edits=10) it checks the bounds (median ≤ 3 s,
// maximum ≤ 5 s); the default two edits only a generous bound.
func TestPolicyTestWatchLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("builds policies; skipped with -short")
	}
	for _, c := range []struct {
		name string
		make func(*testing.T) watchSubject
	}{{"go", goWatchSubject}, {"rust", rustWatchSubject}} {
		t.Run(c.name, func(t *testing.T) {
			s := c.make(t)
			s.write("small talk")
			pr, pw := io.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int)
			go func() {
				done <- Run(ctx, []string{"policy", "test", "--watch", s.dir}, Stdio{In: strings.NewReader(""), Out: pw, Err: io.Discard})
				pw.Close()
			}()
			defer func() {
				cancel()
				go io.Copy(io.Discard, pr)
				if code := <-done; code != 0 {
					t.Errorf("watch exited %d", code)
				}
			}()
			lines := bufio.NewScanner(pr)
			next := func(timeout time.Duration) string {
				got := make(chan string, 1)
				go func() {
					if lines.Scan() {
						got <- lines.Text()
					} else {
						got <- "(end of output)"
					}
				}()
				select {
				case l := <-got:
					return l
				case <-time.After(timeout):
					t.Fatalf("no verdict within %v", timeout)
					return ""
				}
			}
			// The first build is cold (a Rust build compiles the SDK).
			if l := next(5 * time.Minute); !strings.Contains(l, "ok   ") {
				t.Fatalf("first verdict: %s", l)
			}
			var took []time.Duration
			for i := 0; i < *watchEdits; i++ {
				reason, want := "chit chat", "FAIL "
				if i%2 == 1 {
					reason, want = "small talk", "ok   "
				}
				time.Sleep(50 * time.Millisecond) // a distinct modification time
				t0 := time.Now()
				s.write(reason)
				l := next(time.Minute)
				took = append(took, time.Since(t0))
				if !strings.Contains(l, want) {
					t.Fatalf("edit %d (%q): verdict %q, want %q", i+1, reason, l, want)
				}
				t.Logf("edit %d: %v: %s", i+1, took[i].Round(time.Millisecond), l)
			}
			slices.Sort(took)
			median, worst := took[len(took)/2], took[len(took)-1]
			t.Logf("%s: %d edits, median %v, max %v", c.name, len(took), median.Round(time.Millisecond), worst.Round(time.Millisecond))
			if len(took) >= 10 && (median > 3*time.Second || worst > 5*time.Second) {
				t.Errorf("watch latency: median %v (want ≤ 3 s), max %v (want ≤ 5 s)", median, worst)
			}
			if worst > 30*time.Second {
				t.Errorf("watch latency: max %v", worst)
			}
		})
	}
}
