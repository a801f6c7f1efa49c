//go:build unix

package rollout_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/store/pgpolicy"
	"github.com/wingman-app/wingate/host/store/pgstore"
	"github.com/wingman-app/wingate/sdk/abi"
)

// logRecorder is a slog handler keeping every record's message and
// attributes as one line.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) count(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// hostileDir writes a policy directory whose route entry is sound and
// whose cache and compress entries are what a hostile author drops in:
// cacheFile and compressFile are set up by the caller.
func hostileDir(t *testing.T, cacheTTL int) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "route.wasm", testGuest(t))
	writePolicies(t, dir, cacheTTL)
	return dir
}

func writePolicies(t *testing.T, dir string, cacheTTL int) {
	t.Helper()
	writeFile(t, dir, policy.PoliciesFileName, fmt.Appendf(nil, `{"policies": [
 {"kind": "route", "name": "route", "file": "route.wasm", "config": {"mode": "ok"}},
 {"kind": "cache", "name": "cache", "file": "cache.wasm", "config": %s},
 {"kind": "compress", "name": "compress", "file": "compress.wasm"}
]}`, cacheConfig(cacheTTL)))
}

// TestImportDirLimits: a FIFO, a symlink to /dev/zero, a link out of the
// directory, an oversized module and oversized case files are refused
// without blocking, each error naming the file and the limit, while the
// directory's sound entry is activated; through the watcher each refusal
// is logged once and the other kinds keep following the directory.
func TestImportDirLimits(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	writeFile(t, outside, "cache.wasm", cacheWasm(t))
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"fifo", func(t *testing.T, dir string) { syscall.Mkfifo(filepath.Join(dir, "cache.wasm"), 0o644) }, "cache.wasm: is a named pipe (FIFO), not a regular file"},
		{"dev-zero", func(t *testing.T, dir string) { os.Symlink("/dev/zero", filepath.Join(dir, "cache.wasm")) }, "cache.wasm: leads out of the policy directory"},
		{"link-out", func(t *testing.T, dir string) {
			os.Symlink(filepath.Join(outside, "cache.wasm"), filepath.Join(dir, "cache.wasm"))
		}, "cache.wasm: leads out of the policy directory"},
		{"oversized", func(t *testing.T, dir string) {
			f, _ := os.Create(filepath.Join(dir, "cache.wasm"))
			f.Truncate(policy.MaxModuleBytes + 1)
			f.Close()
		}, "cache.wasm: over the limit of 33554432 bytes"},
		{"sig-fifo", func(t *testing.T, dir string) {
			writeFile(t, dir, "cache.wasm", cacheWasm(t))
			syscall.Mkfifo(filepath.Join(dir, "cache.wasm.sig"), 0o644)
		}, "cache.wasm.sig: is a named pipe"},
		{"cases-oversized", func(t *testing.T, dir string) {
			writeFile(t, dir, "cache.wasm", cacheWasm(t))
			writeFile(t, dir, "cases/cache/a.json", []byte("["+strings.Repeat(" ", policy.MaxCasesBytes)+"]"))
		}, "cases/cache/a.json: over the limit of 4194304 bytes"},
		{"cases-link-out", func(t *testing.T, dir string) {
			writeFile(t, dir, "cache.wasm", cacheWasm(t))
			writeFile(t, outside, "cases/a.json", catalogueCase(1800))
			os.MkdirAll(filepath.Join(dir, "cases"), 0o755)
			os.Symlink(filepath.Join(outside, "cases"), filepath.Join(dir, "cases", "cache"))
		}, "cases/cache/a.json: leads out of the policy directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: -1})
			dir := hostileDir(t, 1800)
			tt.setup(t, dir)
			os.Symlink("/dev/zero", filepath.Join(dir, "compress.wasm"))
			start := time.Now()
			err := mgr.ImportDir(ctx, dir, false)
			if took := time.Since(start); took > 20*time.Second {
				t.Fatalf("ImportDir took %v", took)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "compress.wasm: leads out") {
				t.Fatalf("err = %v, want %q and the compress link named", err, tt.want)
			}
			t.Logf("%v", err)
			if _, res := mgr.Decider().Route(ctx, &abi.RouteRequest{Message: "hi"}); res.Policy != "route" {
				t.Fatalf("route served by %q, want the directory's route policy", res.Policy)
			}
			recs, _ := mgr.List(ctx)
			for _, r := range recs {
				if r.Kind != "route" {
					t.Fatalf("stored a %s version (%s) from a refused file", r.Kind, r.Name)
				}
			}
		})
	}

	// Watched: a FIFO dropped in as the cache module is refused, logged
	// once however often the directory changes, and the watcher keeps
	// following the directory for the other kinds and for cache once the
	// FIFO is replaced.
	t.Run("watched", func(t *testing.T) {
		logs := &logRecorder{}
		mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: -1, Logger: slog.New(logs)})
		dir := hostileDir(t, 1800)
		writeFile(t, dir, "cache.wasm", cacheWasm(t))
		writeFile(t, dir, "compress.wasm", testGuest(t))
		if err := mgr.ImportDir(ctx, dir, false); err != nil {
			t.Fatal(err)
		}
		if err := mgr.WatchDir(dir, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "cache.wasm"))
		syscall.Mkfifo(filepath.Join(dir, "cache.wasm"), 0o644)
		eventually(t, 10*time.Second, "the FIFO's refusal logged", func() bool { return logs.count("cache.wasm: is a named pipe") == 1 })
		// Changes to the route entry still take: a new route version each.
		for i := range 3 {
			writeFile(t, dir, policy.PoliciesFileName, fmt.Appendf(nil, `{"policies": [
 {"kind": "route", "name": "route-%d", "file": "route.wasm", "config": {"mode": "ok"}},
 {"kind": "cache", "name": "cache", "file": "cache.wasm", "config": %s},
 {"kind": "compress", "name": "compress", "file": "compress.wasm", "config": {"mode": "ok"}}
]}`, i, cacheConfig(1800)))
			eventually(t, 10*time.Second, "the route change to be followed", func() bool {
				_, res := mgr.Decider().Route(ctx, &abi.RouteRequest{Message: "hi"})
				return res.Policy == fmt.Sprintf("route-%d", i)
			})
		}
		if n := logs.count("cache.wasm: is a named pipe"); n != 1 {
			t.Fatalf("the FIFO's refusal was logged %d times, want once", n)
		}
		// Cache still serves its last good version; a sound module again
		// is followed.
		d, res := mgr.Decider().Cache(ctx, &abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges", User: "1"})
		if res.Policy != "cache" || d.TTLSeconds != 1800 {
			t.Fatalf("cache served by %q ttl %d", res.Policy, d.TTLSeconds)
		}
		os.Remove(filepath.Join(dir, "cache.wasm"))
		writeFile(t, dir, "cache.wasm", versionWasm(t, "again"))
		writePolicies(t, dir, 1700)
		eventually(t, 20*time.Second, "the repaired cache entry to be followed", func() bool {
			d, _ := mgr.Decider().Cache(ctx, &abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges", User: "1"})
			return d.TTLSeconds == 1700
		})
	})

	// Fleet mode: the directory seeds PostgreSQL through the same checks;
	// nothing of a refused file reaches the shared store.
	t.Run("fleet-seeding", func(t *testing.T) {
		dbURL, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_rollout_dir")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { drop() })
		pg, err := pgpolicy.Open(ctx, pgpolicy.Config{URL: dbURL})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pg.Close)
		mgr := newManager(t, newRuntime(t), rollout.Config{Store: pg, RollbackThreshold: -1})
		dir := hostileDir(t, 1800)
		syscall.Mkfifo(filepath.Join(dir, "cache.wasm"), 0o644)
		os.Symlink("/dev/zero", filepath.Join(dir, "compress.wasm"))
		err = mgr.ImportDir(ctx, dir, true)
		if err == nil || !strings.Contains(err.Error(), "cache.wasm: is a named pipe") || !strings.Contains(err.Error(), "compress.wasm: leads out") {
			t.Fatalf("seeding: %v", err)
		}
		recs, err := pg.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Kind != "route" || recs[0].Status != rollout.StatusActive {
			t.Fatalf("the store holds %+v, want the route version alone, active", recs)
		}
	})
}
