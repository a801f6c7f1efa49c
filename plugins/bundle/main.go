// Command bundle is Wingate's three default policies (cache, route and
// compress) in one WebAssembly module, built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o policies/bundle.wasm ./plugins/bundle
//
// It is what policies/policies.json serves for the three kinds. The
// logic is the three plugins' own (packages rules, router and
// compressor; plugins/cache, plugins/route and plugins/compress build
// each alone). What the bundle saves is the rest: the Go runtime and the
// standard library are some 95% of each module's code, and a runtime
// compiles a module once however many versions use it. The three
// modules were 6.6 MB of code to compile (seconds of CPU at every start
// with an empty compilation cache) and some 47 MiB of machine code
// resident; the bundle is 2.4 MB and some 17 MiB.
//
// Each kind's entry still has its own configuration, and each version
// (one per kind) its own instances, so an instance is configured by one
// entry's configuration. The ABI hands init the configuration alone, so
// the bundle tells the kinds apart by their configurations: each kind's
// parser refuses unknown fields, and an instance configures every kind
// whose parser accepts the bytes. An empty configuration is every kind's
// defaults. Bytes no parser accepts are refused with each parser's
// reason.
package main

import (
	"errors"
	"fmt"

	"github.com/wingman-app/wingate/plugins/cache/rules"
	"github.com/wingman-app/wingate/plugins/compress/compressor"
	"github.com/wingman-app/wingate/plugins/route/router"
	"github.com/wingman-app/wingate/sdk"
)

// The instance's policies, each set by a configuration its parser
// accepted; scratch is where cache decisions are built (the SDK encodes
// a decision before the next call).
var (
	cachePolicy    *rules.Policy
	scratch        rules.Scratch
	routePolicy    *router.Router
	compressPolicy *compressor.Compressor
)

// configure sets up every kind whose parser accepts config.
func configure(config []byte) error {
	var errs []error
	cache, err := rules.Parse(config)
	if err != nil {
		errs = append(errs, fmt.Errorf("not a cache configuration: %w", err))
	}
	var route *router.Router
	rc, err := router.ParseConfig(config)
	if err == nil {
		route, err = router.New(rc, nil)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("not a route configuration: %w", err))
	}
	var comp *compressor.Compressor
	cc, err := compressor.ParseConfig(config)
	if err == nil {
		comp, err = compressor.New(cc)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("not a compress configuration: %w", err))
	}
	if cache == nil && route == nil && comp == nil {
		return errors.Join(errs...)
	}
	if cache != nil {
		cachePolicy = cache
	}
	if route != nil {
		routePolicy = route
	}
	if comp != nil {
		compressPolicy = comp
	}
	return nil
}

// errNotConfigured: a decision of a kind no configuration of this
// instance was for (its version serves another kind).
var errNotConfigured = errors.New("bundle: this instance has no configuration of this kind")

func decideCache(req sdk.CacheRequest) (sdk.CacheDecision, error) {
	if cachePolicy == nil {
		return sdk.CacheDecision{}, errNotConfigured
	}
	return cachePolicy.DecideInto(&req, &scratch), nil
}

func decideRoute(req sdk.RouteRequest) (sdk.RouteDecision, error) {
	if routePolicy == nil {
		return sdk.RouteDecision{}, errNotConfigured
	}
	return routePolicy.Decide(&req), nil
}

func decideCompress(req sdk.CompressRequest) (sdk.CompressDecision, error) {
	if compressPolicy == nil {
		return sdk.CompressDecision{}, errNotConfigured
	}
	return compressPolicy.Compress(&req), nil
}

func init() {
	sdk.OnInit(configure)
	sdk.HandleCache(decideCache)
	sdk.HandleRoute(decideRoute)
	sdk.HandleCompress(decideCompress)
}

func main() {}
