package rollout_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
	"github.com/wingman-app/wingate/host/rollout"
)

// cacheWasm returns the default cache policy, built from plugins/cache.
func cacheWasm(tb testing.TB) []byte {
	tb.Helper()
	return buildtest.Wasm(tb, filepath.Join(testkit.RepoRoot(tb), "plugins", "cache"))
}

// testGuest returns the runtime's test guest, whose behaviour is chosen
// by configuration ({"mode": "ok"|"error"|...}).
func testGuest(tb testing.TB) []byte {
	tb.Helper()
	return buildtest.Wasm(tb, filepath.Join(testkit.RepoRoot(tb), "host", "policy", "testdata", "guest"))
}

// versionWasm returns the module of test version tag: the default cache
// policy with a custom section naming tag (its own digest). Under the race
// detector every tag gets the same bytes, compiled once (the versions then
// differ by name and configuration only).
func versionWasm(tb testing.TB, tag string) []byte {
	if raceEnabled {
		return cacheWasm(tb)
	}
	return testkit.WasmVariant(cacheWasm(tb), tag)
}

// abiV2 renames the ABI v1 marker export: a module of another major ABI.
func abiV2(wasm []byte) []byte {
	return bytes.ReplaceAll(wasm, []byte("wingate_abi_v1"), []byte("wingate_abi_v2"))
}

// newRuntime returns a runtime,
// closed at the end of the test.
func newRuntime(tb testing.TB) *policy.Runtime {
	tb.Helper()
	// The default compilation cache directory, as in production: a module
	// compiled once on this machine loads in milliseconds afterwards.
	rt, err := policy.NewRuntime(context.Background(), policy.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

// newManager returns a manager on rt with cfg's other fields, closed at
// the end of the test.
func newManager(tb testing.TB, rt *policy.Runtime, cfg rollout.Config) *rollout.Manager {
	tb.Helper()
	cfg.Runtime = rt
	if cfg.Store == nil {
		cfg.Store = rollout.NewMemStore()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(tb)
	}
	if cfg.MinInstances == 0 {
		cfg.MinInstances, cfg.MaxInstances = 2, 8
	}
	m, err := rollout.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Close)
	return m
}

func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// cacheConfig is the default cache policy's configuration with the
// catalogue's TTL set to ttl.
func cacheConfig(ttl int) []byte {
	return fmt.Appendf(nil, `{"rules": [
 {"route": "/api/challenges", "ttl_s": %d, "scope": "global", "stale_s": 300, "tags": ["challenges"]},
 {"route": "/api/challenges/:id", "ttl_s": 1800, "scope": "global", "stale_s": 300, "tags": ["challenges", "challenge:{id}"]}
]}`, ttl)
}

// catalogueCase is a case file whose catalogue case wants ttl.
func catalogueCase(ttl int) []byte {
	return fmt.Appendf(nil, `[{"name": "catalogue", "input": {"method": "GET", "route": "/api/challenges", "path": "/api/challenges", "user": "1"},
 "want": {"action": "lookup", "key": "/api/challenges", "ttl_s": %d, "scope": "global"}}]`, ttl)
}

// listen returns a loopback listener.
func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			tb.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
