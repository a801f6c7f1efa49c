package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policybuild"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
)

func TestHasMain(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if hasMain(dir) {
		t.Error("empty dir has a main package")
	}
	if hasMain(filepath.Join(dir, "missing")) {
		t.Error("missing dir has a main package")
	}
	write("lib.go", "// Package lib.\npackage lib\n")
	write("x_test.go", "package main\n")
	if hasMain(dir) {
		t.Error("library (and a main test file) counted as a main package")
	}
	write("main.go", "// Command x.\npackage main\n\nfunc main() {}\n")
	if !hasMain(dir) {
		t.Error("main package not found")
	}
}

func TestBuildSkipsMissingPlugin(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.wasm")
	built, err := build(context.Background(), filepath.Join(t.TempDir(), "nope"), out)
	if err != nil || built {
		t.Fatalf("built %v, err %v; want a skip", built, err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output exists after a skip: %v", err)
	}
}

// TestBuildWritesAWasmModule builds the smallest plugin and checks the
// module's magic number, that no temporary file remains and that a failed
// build leaves the previous module alone.
func TestBuildWritesAWasmModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a WebAssembly module; skipped with -short")
	}
	dir := t.TempDir()
	mod := "module example.com/p\n\ngo 1.26\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "package main\n\n//go:wasmexport answer\nfunc answer() int32 { return 42 }\n\nfunc main() {}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "p.wasm")
	// go build resolves the package path from the working directory's
	// module, so build from the plugin's own module.
	t.Chdir(dir)
	built, err := build(context.Background(), dir, out)
	if err != nil || !built {
		t.Fatalf("built %v, err %v", built, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x00asm")) {
		t.Errorf("output does not start with the wasm magic: %x", b[:8])
	}
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefined() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := build(context.Background(), dir, out); err == nil {
		t.Fatal("broken plugin built")
	}
	if b2, _ := os.ReadFile(out); !bytes.Equal(b, b2) {
		t.Error("failed build replaced the previous module")
	}
}

// TestBuildRustWithoutToolchain: a Rust plugin without cargo is an
// ErrNoRust whose message says how to install it (main skips it with that
// note, or fails under CI=true).
func TestBuildRustWithoutToolchain(t *testing.T) {
	t.Setenv("WINGATE_CARGO", filepath.Join(t.TempDir(), "no-cargo"))
	out := filepath.Join(t.TempDir(), "cache-rs.wasm")
	built, err := build(context.Background(), filepath.Join("..", "..", "..", "plugins", "cache-rs"), out)
	if built || !errors.Is(err, policybuild.ErrNoRust) || !strings.Contains(err.Error(), "apt-get install -y rustc cargo libstd-rust-dev-wasm32") {
		t.Fatalf("built %v, err %v", built, err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output exists: %v", err)
	}
}

// TestBuildRustPlugin builds the Rust cache policy into a module.
func TestBuildRustPlugin(t *testing.T) {
	buildtest.RequireRust(t)
	out := filepath.Join(t.TempDir(), "cache-rs.wasm")
	built, err := build(context.Background(), filepath.Join("..", "..", "..", "plugins", "cache-rs"), out)
	if err != nil || !built {
		t.Fatalf("built %v, err %v", built, err)
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.HasPrefix(b, []byte("\x00asm")) {
		t.Fatalf("not a module: %v", err)
	}
}
