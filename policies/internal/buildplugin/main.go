// Command buildplugin builds one policy plugin into a WebAssembly module:
//
//	go run ./internal/buildplugin -o route.wasm ../plugins/route
//
// A Go plugin is built with GOOS=wasip1 GOARCH=wasm go build
// -buildmode=c-shared -trimpath; a Rust plugin (a directory with
// Cargo.toml) with cargo for wasm32-unknown-unknown, when the system's
// Rust toolchain is installed (see package policybuild). The output is
// replaced atomically (write to a temporary file, then rename), so that a
// host watching the directory never loads half a module. A plugin
// directory that does not exist or holds no main package is skipped with
// a note, not an error; so is a Rust plugin without the toolchain, with a
// note saying how to install it (unless -require-rust, or CI=true).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/wingman-app/wingate/host/policy/policybuild"
)

func main() {
	out := flag.String("o", "", "output module (required)")
	requireRust := flag.Bool("require-rust", os.Getenv("CI") == "true", "fail when a Rust plugin cannot be built for lack of the toolchain (default: CI=true)")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: buildplugin [-require-rust] -o NAME.wasm PLUGIN_DIR")
		os.Exit(2)
	}
	built, err := build(context.Background(), flag.Arg(0), *out)
	if errors.Is(err, policybuild.ErrNoRust) && !*requireRust {
		fmt.Fprintf(os.Stderr, "buildplugin: %s not built (a Rust policy; optional, the Go policies are the defaults):\n  %v\n", *out, err)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildplugin:", err)
		os.Exit(1)
	}
	if !built {
		fmt.Fprintf(os.Stderr, "buildplugin: %s has no main package yet; %s not built\n", flag.Arg(0), *out)
	}
}

// hasMain reports whether dir holds a Go main package.
func hasMain(dir string) bool { return policybuild.HasMain(dir) }

// build builds the plugin in dir into out; it reports false when dir has
// neither a main package nor a Cargo.toml.
func build(ctx context.Context, dir, out string) (bool, error) {
	if _, err := policybuild.Detect(dir); err != nil {
		return false, nil
	}
	if _, err := policybuild.Build(ctx, dir, out, policybuild.Options{Log: os.Stderr}); err != nil {
		return false, err
	}
	return true, nil
}
