// Package policybuild builds a policy's source directory into a
// WebAssembly module: a Go main package with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath
//
// or a Rust crate (Cargo.toml, crate-type cdylib, using sdk/rust) with
//
//	cargo build --release --target wasm32-unknown-unknown
//
// using the system's Rust toolchain: /usr/bin/cargo and the rustc beside
// it, or WINGATE_CARGO and WINGATE_RUSTC. (A rustup toolchain earlier in
// PATH often lacks the wasm32 target, so PATH is not searched.) The output
// is replaced atomically (written to a temporary file, then renamed), so a
// host watching the directory never loads half a module.
package policybuild

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Language is a policy source's language.
type Language string

const (
	Go   Language = "go"
	Rust Language = "rust"
)

// RustTarget is the target Rust policies are built for: no WASI imports,
// so the smallest modules.
const RustTarget = "wasm32-unknown-unknown"

// InstallHint says how to get a Rust toolchain that builds policies.
const InstallHint = "install it with: apt-get install -y rustc cargo libstd-rust-dev-wasm32 (Debian's Rust has the wasm32 targets), or point WINGATE_CARGO (and WINGATE_RUSTC) at a toolchain that has " + RustTarget

// ErrNoRust is returned (wrapped) when Rust is needed and missing.
var ErrNoRust = errors.New("no Rust toolchain with the " + RustTarget + " target")

// ErrNoSource is returned when a directory holds neither a Go main
// package nor a Cargo.toml.
var ErrNoSource = errors.New("neither a Go main package nor a Rust crate (Cargo.toml)")

// Detect reports the language of the policy source in dir.
func Detect(dir string) (Language, error) {
	if _, err := os.Stat(filepath.Join(dir, "Cargo.toml")); err == nil {
		return Rust, nil
	}
	if HasMain(dir) {
		return Go, nil
	}
	return "", fmt.Errorf("%s: %w", dir, ErrNoSource)
}

// HasMain reports whether dir holds a Go main package (a non-test .go file
// declaring package main).
func HasMain(dir string) bool {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return false
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if t := strings.TrimSpace(line); strings.HasPrefix(t, "package ") {
				if t == "package main" {
					return true
				}
				break
			}
		}
	}
	return false
}

// Toolchain is the Rust toolchain used for Rust policies.
type Toolchain struct {
	Cargo, Rustc string
}

// FindRust returns the toolchain (WINGATE_CARGO or /usr/bin/cargo, and
// WINGATE_RUSTC or the rustc beside cargo) after checking that it can
// build for RustTarget; otherwise an error wrapping ErrNoRust that says
// how to install it.
func FindRust(ctx context.Context) (Toolchain, error) {
	tc := Toolchain{Cargo: os.Getenv("WINGATE_CARGO"), Rustc: os.Getenv("WINGATE_RUSTC")}
	if tc.Cargo == "" {
		tc.Cargo = "/usr/bin/cargo"
	}
	if tc.Rustc == "" {
		tc.Rustc = filepath.Join(filepath.Dir(tc.Cargo), "rustc")
	}
	for _, p := range []string{tc.Cargo, tc.Rustc} {
		if _, err := os.Stat(p); err != nil {
			return tc, fmt.Errorf("%w: %s not found; %s", ErrNoRust, p, InstallHint)
		}
	}
	out, err := exec.CommandContext(ctx, tc.Rustc, "--print", "sysroot").Output()
	if err != nil {
		return tc, fmt.Errorf("%w: %s --print sysroot: %v; %s", ErrNoRust, tc.Rustc, err, InstallHint)
	}
	lib := filepath.Join(strings.TrimSpace(string(out)), "lib", "rustlib", RustTarget, "lib")
	if _, err := os.Stat(lib); err != nil {
		return tc, fmt.Errorf("%w: %s has no %s standard library; %s", ErrNoRust, tc.Rustc, RustTarget, InstallHint)
	}
	return tc, nil
}

// Options tune a build.
type Options struct {
	// Log receives the compiler's output; nil discards it.
	Log io.Writer
	// RustTarget is the Rust target: RustTarget (default) or
	// "wasm32-wasi" (WASI imports from the host's allowlist).
	RustTarget string
	// Quick trades module speed for build time (Rust: no LTO, parallel
	// code generation, incremental): for the edit-test loop, not for
	// modules that serve.
	Quick bool
}

// Build builds the policy source in dir into out.
func Build(ctx context.Context, dir, out string, opts Options) (Language, error) {
	lang, err := Detect(dir)
	if err != nil {
		return "", err
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return lang, err
	}
	tmp := out + ".tmp"
	switch lang {
	case Go:
		cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-trimpath", "-o", mustAbs(tmp), ".")
		cmd.Dir = abs
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
		if err := cmd.Run(); err != nil {
			os.Remove(tmp)
			return lang, fmt.Errorf("build %s: %w", dir, err)
		}
	case Rust:
		target := opts.RustTarget
		if target == "" {
			target = RustTarget
		}
		if target != RustTarget && target != "wasm32-wasi" {
			return lang, fmt.Errorf("rust target %q: want %s or wasm32-wasi", target, RustTarget)
		}
		tc, err := FindRust(ctx)
		if err != nil {
			return lang, err
		}
		artifact, err := rustArtifact(abs)
		if err != nil {
			return lang, err
		}
		cmd := exec.CommandContext(ctx, tc.Cargo, "build", "--release", "--target", target, "--manifest-path", filepath.Join(abs, "Cargo.toml"))
		cmd.Dir = abs
		cmd.Env = append(os.Environ(), "RUSTC="+tc.Rustc, "PATH="+filepath.Dir(tc.Cargo)+string(os.PathListSeparator)+os.Getenv("PATH"))
		if opts.Quick {
			cmd.Env = append(cmd.Env, "CARGO_PROFILE_RELEASE_LTO=false", "CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16", "CARGO_PROFILE_RELEASE_INCREMENTAL=true")
		}
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
		if err := cmd.Run(); err != nil {
			return lang, fmt.Errorf("build %s: %w", dir, err)
		}
		if err := copyFile(filepath.Join(abs, "target", target, "release", artifact+".wasm"), tmp); err != nil {
			os.Remove(tmp)
			return lang, err
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return lang, err
	}
	return lang, nil
}

func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// rustArtifact returns the crate's library name from Cargo.toml: [lib]
// name, else [package] name with '-' as '_'.
func rustArtifact(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "Cargo.toml"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	var section, pkg, lib string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[] ")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "name" {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		switch section {
		case "package":
			pkg = v
		case "lib":
			lib = v
		}
	}
	if lib == "" {
		lib = pkg
	}
	if lib == "" {
		return "", fmt.Errorf("%s/Cargo.toml: no package name", dir)
	}
	return strings.ReplaceAll(lib, "-", "_"), nil
}

// sourceExt are the files whose change makes a module stale.
var sourceExt = map[string]bool{".go": true, ".rs": true, ".toml": true, ".mod": true, ".sum": true, ".lock": false}

// Newest returns the latest modification time of the policy's sources in
// dir (Go, Rust and manifest files; not target/, testdata/ or hidden
// directories).
func Newest(dir string) (time.Time, error) {
	var newest time.Time
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && (d.Name() == "target" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !sourceExt[filepath.Ext(p)] {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		return nil
	})
	return newest, err
}

// Stale reports whether out is missing or older than a source in dir.
func Stale(dir, out string) (bool, error) {
	info, err := os.Stat(out)
	if err != nil {
		return true, nil
	}
	newest, err := Newest(dir)
	if err != nil {
		return false, err
	}
	return newest.After(info.ModTime()), nil
}
