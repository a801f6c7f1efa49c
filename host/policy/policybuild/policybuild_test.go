package policybuild

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDetectAndArtifact(t *testing.T) {
	dir := t.TempDir()
	if _, err := Detect(dir); !errors.Is(err, ErrNoSource) {
		t.Fatalf("empty dir: %v", err)
	}
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() {}\n")
	if l, err := Detect(dir); l != Go || err != nil {
		t.Fatalf("go: %v %v", l, err)
	}
	write(t, filepath.Join(dir, "Cargo.toml"), "[package]\nname = \"my-policy\"\n\n[dependencies]\nname = \"not this\"\n")
	if l, err := Detect(dir); l != Rust || err != nil {
		t.Fatalf("rust: %v %v", l, err)
	}
	if a, err := rustArtifact(dir); a != "my_policy" || err != nil {
		t.Fatalf("artifact %q %v", a, err)
	}
	write(t, filepath.Join(dir, "Cargo.toml"), "[package]\nname = \"p\"\n[lib]\nname = \"lib-name\"\n")
	if a, _ := rustArtifact(dir); a != "lib_name" {
		t.Fatalf("lib artifact %q", a)
	}
}

// TestStale: missing output, a newer source, and sources under target/,
// testdata/ or hidden directories (which do not count).
func TestStale(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src", "lib.rs")
	out := filepath.Join(dir, "p.wasm")
	write(t, src, "//")
	if s, _ := Stale(dir, out); !s {
		t.Fatal("missing output is not stale")
	}
	write(t, out, "x")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(src, old, old)
	if s, _ := Stale(dir, out); s {
		t.Fatal("older source makes it stale")
	}
	for _, p := range []string{"target/x.rs", "testdata/cases/a.go", ".git/x.go"} {
		write(t, filepath.Join(dir, p), "//")
	}
	if s, _ := Stale(dir, out); s {
		t.Fatal("target/, testdata/ or a hidden directory made it stale")
	}
	future := time.Now().Add(time.Hour)
	os.Chtimes(src, future, future)
	if s, _ := Stale(dir, out); !s {
		t.Fatal("newer source is not stale")
	}
}

func TestFindRustNames(t *testing.T) {
	t.Setenv("WINGATE_CARGO", filepath.Join(t.TempDir(), "cargo"))
	_, err := FindRust(t.Context())
	if !errors.Is(err, ErrNoRust) {
		t.Fatalf("%v", err)
	}
}
