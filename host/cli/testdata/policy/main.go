// Command policy is the minimal policy of the cli package's tests: it
// handles every kind with a few fixed rules and takes {"tier": "..."} as
// configuration for the tier of long chat messages.
//
// Built by the tests with:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o policy.wasm ./testdata/policy
package main

import (
	"errors"
	"strings"

	"github.com/wingman-app/wingate/sdk"
)

var longTier = sdk.TierStandard

func init() {
	sdk.OnInit(func(config []byte) error {
		switch {
		case len(config) == 0:
		case strings.Contains(string(config), `"premium"`):
			longTier = sdk.TierPremium
		case strings.Contains(string(config), `"economy"`):
			longTier = sdk.TierEconomy
		case strings.Contains(string(config), `"fail"`):
			return errors.New("configured to fail")
		}
		return nil
	})
	sdk.HandleRoute(func(r sdk.RouteRequest) (sdk.RouteDecision, error) {
		if r.Message == "panic" {
			return sdk.RouteDecision{}, errors.New("asked to fail")
		}
		if r.Purpose == sdk.PurposeAssessment {
			return sdk.RouteDecision{Tier: sdk.TierPremium, Score: 0.9, Reason: "assessment"}, nil
		}
		if len(r.Message) < 20 {
			return sdk.RouteDecision{Tier: sdk.TierEconomy, Score: 0.1, Reason: "short"}, nil
		}
		return sdk.RouteDecision{Tier: longTier, Score: 0.6, Reason: "long"}, nil
	})
	sdk.HandleCache(func(r sdk.CacheRequest) (sdk.CacheDecision, error) {
		if r.Method != "GET" {
			return sdk.CacheDecision{Action: sdk.CacheBypass}, nil
		}
		return sdk.CacheDecision{Action: sdk.CacheLookup, Key: r.Path, TTLSeconds: 60, Scope: sdk.ScopeUser, Tags: []string{"user:" + r.User}}, nil
	})
	sdk.HandleCompress(func(r sdk.CompressRequest) (sdk.CompressDecision, error) {
		var d sdk.CompressDecision
		i := len(r.Messages) - 1
		for ; i >= 0 && d.Tokens+r.Messages[i].Tokens <= r.BudgetTokens; i-- {
			d.Tokens += r.Messages[i].Tokens
		}
		for j := i + 1; j < len(r.Messages); j++ {
			d.Keep = append(d.Keep, uint32(j))
		}
		return d, nil
	})
}

func main() {}
