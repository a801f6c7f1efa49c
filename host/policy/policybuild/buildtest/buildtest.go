// Package buildtest builds policy modules for tests. A test that needs a
// Rust module fails under CI=true when the Rust toolchain is missing (CI
// installs it: see .ci/run) and otherwise skips, saying how to install it.
package buildtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policybuild"
)

// Build builds the policy source in dir (Go or Rust) into a temporary
// module and returns its path. Rust builds reuse the crate's target
// directory, so only the first is slow.
func Build(tb testing.TB, dir string) string {
	tb.Helper()
	lang, err := policybuild.Detect(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if lang == policybuild.Rust {
		RequireRust(tb)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(dir)+".wasm")
	if _, err := policybuild.Build(context.Background(), dir, out, policybuild.Options{Log: testLog{tb}}); err != nil {
		tb.Fatal(err)
	}
	return out
}

// RequireRust fails (CI=true) or skips the test when the Rust toolchain
// for policies is missing.
func RequireRust(tb testing.TB) {
	tb.Helper()
	if _, err := policybuild.FindRust(context.Background()); err != nil {
		if errors.Is(err, policybuild.ErrNoRust) && os.Getenv("CI") != "true" {
			tb.Skipf("Rust policies not built: %v", err)
		}
		tb.Fatalf("CI must build the Rust policies: %v", err)
	}
}

type testLog struct{ tb testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.tb.Logf("%s", p)
	return len(p), nil
}
