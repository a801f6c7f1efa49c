package policy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
)

var tmpDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wingate-policy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testGuest returns the test guest module (testdata/guest), whose
// behaviour is chosen by configuration.
func testGuest(tb testing.TB) []byte {
	tb.Helper()
	return buildtest.Wasm(tb, "testdata/guest")
}

// shared runtime for tests that do not inspect runtime-wide state.
var (
	rtOnce   sync.Once
	sharedRT *Runtime
	rtErr    error
)

func testRuntime(tb testing.TB) *Runtime {
	tb.Helper()
	rtOnce.Do(func() {
		sharedRT, rtErr = NewRuntime(context.Background(), Options{CacheDir: filepath.Join(tmpDir, "cache")})
	})
	if rtErr != nil {
		tb.Fatal(rtErr)
	}
	return sharedRT
}

// newRuntime returns a runtime of the test's own, closed at its end.
func newRuntime(tb testing.TB, opts Options) *Runtime {
	tb.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = filepath.Join(tmpDir, "cache")
	}
	rt, err := NewRuntime(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

// loadGuest loads the test guest in mode with tag.
func loadGuest(tb testing.TB, rt *Runtime, mode, tag string, spec Spec) *Version {
	tb.Helper()
	spec.Config = []byte(fmt.Sprintf(`{"mode":%q,"tag":%q}`, mode, tag))
	if spec.Name == "" {
		spec.Name = "guest-" + mode
	}
	v, err := rt.Load(context.Background(), spec, testGuest(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	return v
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

func itoa(n int) string { return strconv.Itoa(n) }
