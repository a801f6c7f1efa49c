// Command route is Wingate's default route policy, a WebAssembly module
// built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o policies/route.wasm ./plugins/route
//
// It scores each chat message in [0, 1] by how much a stronger model would
// help and picks the tier from thresholds: small talk and acknowledgements
// go to economy, most messages to standard, hard ones (and assessments
// from a lower threshold) to premium. The algorithm lives in package
// router; its thresholds are the config of the route entry of
// policies/policies.json, and its learned weights are generated into the
// source (go generate ./plugins/route/router).
package main

import (
	"github.com/wingman-app/wingate/plugins/route/router"
	"github.com/wingman-app/wingate/sdk"
)

// rt is the instance's router, built by the init handler from the
// policy's configuration.
var rt = sdk.Configure(func(config []byte) (*router.Router, error) {
	cfg, err := router.ParseConfig(config)
	if err != nil {
		return nil, err
	}
	return router.New(cfg, nil)
})

// decide answers one route request; before init it uses the defaults.
func decide(req sdk.RouteRequest) (sdk.RouteDecision, error) {
	r, err := rt.Get()
	if err != nil {
		return sdk.RouteDecision{}, err
	}
	return r.Decide(&req), nil
}

func init() { sdk.HandleRoute(decide) }

func main() {}
