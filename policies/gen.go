// Package policies is the directory the host loads policies from: the
// built modules (<name>.wasm, not committed) and policies.json, which says
// which module serves which kind with what configuration.
//
// go generate ./policies builds each plugins/<name> into <name>.wasm with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath
//
// policies.json serves the three kinds from bundle.wasm (plugins/bundle:
// the three default policies in one module, which a server compiles
// once); cache.wasm, route.wasm and compress.wasm are each policy alone,
// to push or to serve by pointing an entry at it.
//
// and skips a plugin whose directory has no main package yet, so that it
// works on a fresh clone with only Go installed. The Rust policies
// (plugins/*-rs, not served by default) are built with the system's cargo
// for wasm32-unknown-unknown when it is installed; without it they are
// skipped with a note saying how to install it (an error under CI=true).
// It then runs `wingate policy compile`, which validates the modules with
// their configuration and fills the compilation cache, so that the next
// server (or test) to load them starts without compiling.
package policies

//go:generate go run ./internal/buildplugin -o cache.wasm ../plugins/cache
//go:generate go run ./internal/buildplugin -o route.wasm ../plugins/route
//go:generate go run ./internal/buildplugin -o compress.wasm ../plugins/compress
//go:generate go run ./internal/buildplugin -o bundle.wasm ../plugins/bundle
//go:generate go run ./internal/buildplugin -o cache-rs.wasm ../plugins/cache-rs
//go:generate go run ../cmd/wingate policy compile --policy-dir .
