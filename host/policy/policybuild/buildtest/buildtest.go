// Package buildtest builds policy modules for tests, the one way every
// test builds a guest from source: through policybuild, as `wingate
// policy build` does. Go guests are cached by a hash of their source, so
// each is built once however many tests and test binaries ask for it. A
// test that needs a Rust module fails under CI=true when the Rust
// toolchain is missing (CI installs it: see .ci/run) and otherwise skips,
// saying how to install it.
package buildtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policybuild"
)

// Build builds the policy source in dir (Go or Rust) into a temporary
// module and returns its path. Go modules come from the cache (see
// Wasm); Rust builds reuse the crate's target directory, so only the
// first is slow.
func Build(tb testing.TB, dir string) string {
	tb.Helper()
	lang, err := policybuild.Detect(dir)
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(dir)+".wasm")
	if lang == policybuild.Go {
		if err := os.WriteFile(out, Wasm(tb, dir), 0o644); err != nil {
			tb.Fatal(err)
		}
		return out
	}
	RequireRust(tb)
	if _, err := policybuild.Build(context.Background(), dir, out, policybuild.Options{Log: testLog{tb}}); err != nil {
		tb.Fatal(err)
	}
	return out
}

// Wasm returns the module built from the policy source in dir. A Go
// guest is built at most once per source: the module is kept under a hash
// of every file the build reads from this repository (the Go files and
// embedded files of the guest's packages and of every package of the
// repository it imports, go.mod and go.sum) and the Go version, in the
// test process (by directory: the first call's source counts) and in the
// user's cache directory, which every test
// binary shares; a change to any of those files builds anew. A Rust
// guest is built by Build.
func Wasm(tb testing.TB, dir string) []byte {
	tb.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if lang, err := policybuild.Detect(abs); err != nil {
		tb.Fatal(err)
	} else if lang != policybuild.Go {
		b, err := os.ReadFile(Build(tb, abs))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	mu.Lock()
	e, ok := built[abs]
	if !ok {
		e = &entry{}
		built[abs] = e
	}
	mu.Unlock()
	e.once.Do(func() {
		key, err := sourceHash(abs)
		if err != nil {
			e.err = fmt.Errorf("hash the source of %s: %w", dir, err)
			return
		}
		e.wasm, e.err = buildCached(abs, key, testLog{tb})
	})
	if e.err != nil {
		tb.Fatal(e.err)
	}
	return e.wasm
}

type entry struct {
	once sync.Once
	wasm []byte
	err  error
}

var (
	mu    sync.Mutex
	built = map[string]*entry{}
)

// buildCached returns the module of key from the cache directory, or
// builds it there (written to a temporary name and renamed, so test
// binaries running at once never read half a module).
func buildCached(dir, key string, log io.Writer) ([]byte, error) {
	cache := cacheDir()
	path := filepath.Join(cache, key+".wasm")
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cache, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "guest.wasm")
	if _, err := policybuild.Build(context.Background(), dir, out, policybuild.Options{Log: log}); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(out, path); err != nil {
		return nil, err
	}
	return b, nil
}

// cacheDir is where built guests are kept: WINGATE_GUEST_CACHE, else
// wingate-test-guests in the user's cache directory (the system's
// temporary directory when there is none).
func cacheDir() string {
	if d := os.Getenv("WINGATE_GUEST_CACHE"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "wingate-test-guests")
}

// sourceHash hashes what a wasip1 build of the Go package in dir reads
// from its own module, as `go list -deps` names it, with the Go version.
func sourceHash(dir string) (string, error) {
	const format = `{{if and .Module .Module.Main}}{{.Module.GoMod}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .GoFiles " "}} {{join .EmbedFiles " "}}{{end}}`
	cmd := exec.Command("go", "list", "-deps", "-f", format, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	listed, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list: %v: %s", err, stderr.Bytes())
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", runtime.Version())
	add := func(path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(path), len(b))
		h.Write(b)
		return nil
	}
	var goMod string
	for _, line := range strings.Split(strings.TrimSpace(string(listed)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		goMod = f[0]
		rel, _ := filepath.Rel(filepath.Dir(goMod), f[1])
		fmt.Fprintf(h, "package %s\n", filepath.ToSlash(rel))
		for _, name := range strings.Fields(f[2]) {
			if err := add(filepath.Join(f[1], name)); err != nil {
				return "", err
			}
		}
	}
	if goMod == "" {
		return "", fmt.Errorf("%s: no package of the main module listed", dir)
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		if err := add(filepath.Join(filepath.Dir(goMod), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
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
