// Command cache is Wingate's default cache policy, a WebAssembly module
// built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o policies/cache.wasm ./plugins/cache
//
// Its rules (route template → action, TTL, scope, stale window, tags) are
// the configuration of the cache entry in policies/policies.json; package
// rules holds the logic and the defaults. A rule with action "purge" names
// the tags a successful write purges: the decision is a bypass carrying
// those tags.
package main

import (
	"github.com/wingman-app/wingate/plugins/cache/rules"
	"github.com/wingman-app/wingate/sdk"
)

// pol is the instance's compiled configuration; scratch is where its
// decisions are built (the SDK encodes a decision before the next call).
var (
	pol     = sdk.Configure(rules.Parse)
	scratch rules.Scratch
)

func decide(req sdk.CacheRequest) (sdk.CacheDecision, error) {
	p, err := pol.Get()
	if err != nil {
		return sdk.CacheDecision{}, err
	}
	return p.DecideInto(&req, &scratch), nil
}

func init() { sdk.HandleCache(decide) }

func main() {}
