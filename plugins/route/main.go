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
var rt *router.Router

// configure parses the configuration once per instance.
func configure(config []byte) error {
	cfg, err := router.ParseConfig(config)
	if err != nil {
		return err
	}
	r, err := router.New(cfg, nil)
	if err != nil {
		return err
	}
	rt = r
	return nil
}

// decide answers one route request; before init it uses the defaults.
func decide(req sdk.RouteRequest) (sdk.RouteDecision, error) {
	if rt == nil {
		if err := configure(nil); err != nil {
			return sdk.RouteDecision{}, err
		}
	}
	return rt.Decide(&req), nil
}

func init() {
	sdk.OnInit(configure)
	sdk.HandleRoute(decide)
}

func main() {}
