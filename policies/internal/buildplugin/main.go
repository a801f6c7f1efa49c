// Command buildplugin builds one policy plugin into a WebAssembly module:
//
//	go run ./internal/buildplugin -o route.wasm ../plugins/route
//
// runs GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath and
// replaces the output atomically (write to a temporary file, then rename),
// so that a host watching the directory never loads half a module. A
// plugin directory that does not exist or holds no main package is skipped
// with a note, not an error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	out := flag.String("o", "", "output module (required)")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: buildplugin -o NAME.wasm PLUGIN_DIR")
		os.Exit(2)
	}
	built, err := build(context.Background(), flag.Arg(0), *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildplugin:", err)
		os.Exit(1)
	}
	if !built {
		fmt.Fprintf(os.Stderr, "buildplugin: %s has no main package yet; %s not built\n", flag.Arg(0), *out)
	}
}

// hasMain reports whether dir holds a Go main package (a non-test .go file
// declaring package main).
func hasMain(dir string) bool {
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
			if strings.HasPrefix(strings.TrimSpace(line), "package ") {
				if strings.TrimSpace(line) == "package main" {
					return true
				}
				break
			}
		}
	}
	return false
}

// build builds the plugin in dir into out; it reports false when dir has
// no main package.
func build(ctx context.Context, dir, out string) (bool, error) {
	if !hasMain(dir) {
		return false, nil
	}
	tmp := out + ".tmp"
	pkg, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-trimpath", "-o", tmp, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("build %s: %w", dir, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, nil
}
