package buildtest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// TestSourceHash: the key changes with every file the build reads (a Go
// file of the guest, a package it imports, go.mod) and with nothing else.
func TestSourceHash(t *testing.T) {
	mod := t.TempDir()
	write := func(name, text string) { testkit.WriteFile(t, mod, name, text) }
	write("go.mod", "module example.com/g\n\ngo 1.21\n")
	write("lib/lib.go", "package lib\n\nconst N = 1\n")
	write("guest/main.go", "package main\n\nimport \"example.com/g/lib\"\n\nfunc main() { _ = lib.N }\n")
	guest := filepath.Join(mod, "guest")
	hash := func() string {
		t.Helper()
		h, err := sourceHash(guest)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first := hash()
	if again := hash(); again != first {
		t.Fatalf("hash not stable: %s then %s", first, again)
	}
	write("README.md", "not read by the build\n")
	write("other/other.go", "package other\n")
	write("guest/main_test.go", "package main\n")
	if h := hash(); h != first {
		t.Fatalf("files the build does not read changed the hash")
	}
	prev := first
	for _, change := range [][2]string{
		{"guest/main.go", "package main\n\nimport \"example.com/g/lib\"\n\nfunc main() { _ = lib.N + 1 }\n"},
		{"lib/lib.go", "package lib\n\nconst N = 2\n"},
		{"guest/extra.go", "package main\n"},
		{"go.mod", "module example.com/g\n\ngo 1.22\n"},
	} {
		write(change[0], change[1])
		h := hash()
		if h == prev {
			t.Errorf("changing %s left the hash %s", change[0], h)
		}
		prev = h
	}
}

// TestWasmCached builds the policy runtime's test guest once, then
// serves it from the cache directory: a module planted under the key is
// what the next build returns, so no second compile ran.
func TestWasmCached(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a guest")
	}
	t.Setenv("WINGATE_GUEST_CACHE", t.TempDir())
	dir := filepath.Join(testkit.RepoRoot(t), "host", "policy", "testdata", "guest")
	wasm := Wasm(t, dir)
	if !bytes.HasPrefix(wasm, []byte("\x00asm")) {
		t.Fatalf("not a wasm module: % x", wasm[:min(8, len(wasm))])
	}
	key, err := sourceHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cacheDir(), key+".wasm")
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, wasm) {
		t.Fatalf("cache file %s: %v (same bytes: %v)", path, err, bytes.Equal(b, wasm))
	}
	planted := []byte("\x00asm\x01\x00\x00\x00planted")
	if err := os.WriteFile(path, planted, 0o644); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clear(built)
	mu.Unlock()
	if got := Wasm(t, dir); !bytes.Equal(got, planted) {
		t.Fatalf("second build did not come from the cache (%d bytes)", len(got))
	}
	if got := Wasm(t, dir); !bytes.Equal(got, planted) {
		t.Fatal("third call did not come from the process's cache")
	}
}
