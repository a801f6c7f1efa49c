//go:build unix

package policy

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// TestPolicyDirFileLimits tries what a hostile policy directory can hold
// against ReadDirFile: each is refused before a byte is read, promptly,
// with an error naming the file and the limit.
func TestPolicyDirFileLimits(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(name string, b []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ok.wasm", []byte("\x00asm"))
	write("builds/v7.wasm", []byte("\x00asm-v7"))
	if err := os.WriteFile(filepath.Join(outside, "secret.wasm"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"inside.wasm":  "builds/v7.wasm",
		"zero.wasm":    "/dev/zero",
		"escape.wasm":  filepath.Join(outside, "secret.wasm"),
		"relout.wasm":  "../" + filepath.Base(outside) + "/secret.wasm",
		"dangle.wasm":  "nowhere.wasm",
		"tofifo.wasm":  "fifo.wasm",
		"outdir":       outside,
		"devdir":       "/dev",
		"dirlink.wasm": "builds",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A sparse file one byte over the cap: refused from its size alone.
	big, err := os.Create(filepath.Join(dir, "big.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	big.Truncate(MaxModuleBytes + 1)
	big.Close()
	os.Mkdir(filepath.Join(dir, "adir.wasm"), 0o755)

	tests := []struct {
		name, want string
		limit      int64
	}{
		{"ok.wasm", "", MaxModuleBytes},
		{"inside.wasm", "", MaxModuleBytes},
		{"fifo.wasm", "named pipe", MaxModuleBytes},
		{"tofifo.wasm", "named pipe", MaxModuleBytes},
		{"zero.wasm", "leads out of the policy directory", MaxModuleBytes},
		{"escape.wasm", "leads out of the policy directory", MaxModuleBytes},
		{"relout.wasm", "leads out of the policy directory", MaxModuleBytes},
		{"outdir/secret.wasm", "leads out of the policy directory", MaxModuleBytes},
		{"devdir/zero", "leads out of the policy directory", MaxModuleBytes},
		{"dangle.wasm", "does not exist", MaxModuleBytes},
		{"dirlink.wasm", "a directory", MaxModuleBytes},
		{"adir.wasm", "a directory", MaxModuleBytes},
		{"big.wasm", "over the limit of 33554432 bytes", MaxModuleBytes},
		{"ok.wasm", "over the limit of 3 bytes", 3},
		{"../x.wasm", "leads out of the policy directory", MaxModuleBytes},
		{"/etc/passwd", "not a path inside", MaxModuleBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			b, err := ReadDirFile(dir, tt.name, tt.limit)
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("took %v: blocked", took)
			}
			if tt.want == "" {
				if err != nil || len(b) == 0 {
					t.Fatalf("err = %v, want the file's bytes", err)
				}
				return
			}
			var de *DirFileError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "policy directory: ") {
				t.Fatalf("err = %v, want a *DirFileError naming the file and %q", err, tt.want)
			}
			if b != nil {
				t.Fatalf("returned %d bytes with the error", len(b))
			}
			t.Logf("%s", err)
		})
	}
	if _, err := ReadDirFile(dir, "dangle.wasm", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	var le *LimitError
	if _, err := ReadDirFile(dir, "big.wasm", MaxModuleBytes); !errors.As(err, &le) || le.Limit != MaxModuleBytes {
		t.Errorf("big file: %v, want a *LimitError", err)
	}
}

// TestPoliciesFileLimits: LoadDir applies the same limits to the policies
// file, its settings and its modules; the directory's other entries still
// load.
func TestPoliciesFileLimits(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"deadline ceiling", `{"policies":[{"kind":"cache","name":"a","file":"a.wasm","deadline_ms":1000000000}]}`, "deadline_ms: 1000000000 ms is over the limit of 10000 ms"},
		{"deadline just over", `{"policies":[{"kind":"cache","name":"a","file":"a.wasm","deadline_ms":10000.5}]}`, "over the limit of 10000 ms"},
		{"instances", `{"policies":[{"kind":"cache","name":"a","file":"a.wasm","max_instances":100000}]}`, "max_instances: 100000 instances is over the limit of 256"},
		{"name charset", `{"policies":[{"kind":"cache","name":"../x","file":"a.wasm"}]}`, `name "../x"`},
		{"name length", `{"policies":[{"kind":"cache","name":"` + strings.Repeat("n", MaxNameBytes+1) + `","file":"a.wasm"}]}`, "name: 129 bytes is over the limit of 128"},
		{"config size", `{"policies":[{"kind":"cache","name":"a","file":"a.wasm","config":"` + strings.Repeat("x", MaxConfigBytes) + `"}]}`, "config: 1048578 bytes is over the limit of 1048576"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePoliciesFile([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}

	rt := testRuntime(t)
	e := NewEngine(EngineOptions{Logger: discardLogger()})
	defer e.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "guest.wasm"), testGuest(t), 0o644)
	syscall.Mkfifo(filepath.Join(dir, "cache.wasm"), 0o644)
	os.Symlink("/dev/zero", filepath.Join(dir, "compress.wasm"))
	os.WriteFile(filepath.Join(dir, PoliciesFileName), []byte(`{"policies":[
		{"kind":"route","name":"r","file":"guest.wasm","config":{"mode":"ok"},"min_instances":1},
		{"kind":"cache","name":"c","file":"cache.wasm"},
		{"kind":"compress","name":"z","file":"compress.wasm"}]}`), 0o644)
	start := time.Now()
	loaded, err := LoadDir(context.Background(), rt, e, dir)
	if time.Since(start) > 10*time.Second {
		t.Fatalf("LoadDir took %v", time.Since(start))
	}
	if err == nil || !strings.Contains(err.Error(), "cache.wasm: is a named pipe (FIFO)") || !strings.Contains(err.Error(), "compress.wasm: leads out") {
		t.Fatalf("err = %v, want the FIFO and the link out named", err)
	}
	if len(loaded) != 1 || e.Active(abi.KindRoute) == nil {
		t.Fatalf("loaded %d versions, want the route policy alone", len(loaded))
	}

	// An oversized policies file is refused before it is parsed.
	big := t.TempDir()
	os.WriteFile(filepath.Join(big, PoliciesFileName), []byte(`{"policies":[]}`+strings.Repeat(" ", MaxPoliciesFileBytes)), 0o644)
	if _, err := ReadPoliciesFile(big); err == nil || !strings.Contains(err.Error(), "policies.json: over the limit of 1048576 bytes") {
		t.Fatalf("oversized policies file: %v", err)
	}
	// A FIFO as the policies file does not block.
	fifo := t.TempDir()
	syscall.Mkfifo(filepath.Join(fifo, PoliciesFileName), 0o644)
	if _, err := ReadPoliciesFile(fifo); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Fatalf("FIFO policies file: %v", err)
	}
}

// FuzzParsePoliciesFile: whatever the bytes, parsing never panics, and a
// file it accepts has every entry within the limits.
func FuzzParsePoliciesFile(f *testing.F) {
	f.Add([]byte(`{"policies":[{"kind":"cache","name":"c","file":"c.wasm","deadline_ms":2,"config":{"a":1}}]}`))
	f.Add([]byte(`{"policies":[{"kind":"route","name":"r","file":"r.wasm","deadline_ms":1e9,"max_instances":7}]}`))
	f.Add([]byte(`{"policies":[{"kind":"compress","name":"../z","file":"../z.wasm","min_instances":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pf, err := ParsePoliciesFile(b)
		if err != nil {
			return
		}
		for _, p := range pf.Policies {
			if CheckName(p.Name) != nil || CheckDeadlineMS(p.DeadlineMS) != nil || CheckInstances(p.MinInstances, p.MaxInstances) != nil ||
				len(p.Config) > MaxConfigBytes || p.DeadlineMS > MaxDeadlineMS || p.MaxInstances > MaxInstancesCeiling {
				t.Fatalf("accepted an entry over the limits: %+v", p)
			}
		}
	})
}
