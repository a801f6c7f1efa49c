package sdk_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wingman-app/wingate/sdk"
)

// A cache policy: cache one user's reputation for 15 minutes, bypass the
// rest. In a policy module the registration goes in init().
func ExampleHandleCache() {
	sdk.HandleCache(func(req sdk.CacheRequest) (sdk.CacheDecision, error) {
		if req.Method != "GET" || req.Route != "/api/users/:id/reputation" {
			return sdk.CacheDecision{Action: sdk.CacheBypass}, nil
		}
		return sdk.CacheDecision{
			Action:       sdk.CacheLookup,
			Key:          req.Path,
			TTLSeconds:   900,
			Scope:        sdk.ScopeUser,
			StaleSeconds: 60,
			Tags:         []string{"user:" + req.User},
		}, nil
	})

	// A unit test calls the handler through the ABI encoding.
	d, err := sdk.CallCache(sdk.CacheRequest{Method: "GET", Route: "/api/users/:id/reputation", Path: "/api/users/42/reputation", User: "42"})
	fmt.Println(d.Action == sdk.CacheLookup, d.Key, d.TTLSeconds, d.Tags, err)
	// Output: true /api/users/42/reputation 900 [user:42] <nil>
}

// A route policy: long messages and assessments go to better tiers.
func ExampleHandleRoute() {
	sdk.HandleRoute(func(req sdk.RouteRequest) (sdk.RouteDecision, error) {
		words := len(strings.Fields(req.Message))
		switch {
		case req.Purpose == sdk.PurposeAssessment:
			return sdk.RouteDecision{Tier: sdk.TierPremium, Score: 0.9, Reason: "assessment"}, nil
		case words > 40:
			return sdk.RouteDecision{Tier: sdk.TierStandard, Score: 0.5, Reason: "coaching"}, nil
		}
		return sdk.RouteDecision{Tier: sdk.TierEconomy, Score: 0.1, Reason: "small talk"}, nil
	})

	d, _ := sdk.CallRoute(sdk.RouteRequest{Message: "hi there!"})
	fmt.Println(d.Tier == sdk.TierEconomy, d.Reason)
	d, _ = sdk.CallRoute(sdk.RouteRequest{Message: "rate my opener", Purpose: sdk.PurposeAssessment})
	fmt.Println(d.Tier == sdk.TierPremium, d.Reason)
	// Output:
	// true small talk
	// true assessment
}

// A compress policy: keep the most recent messages that fit the budget.
// Keep holds ascending indexes into req.Messages.
func ExampleHandleCompress() {
	sdk.HandleCompress(func(req sdk.CompressRequest) (sdk.CompressDecision, error) {
		var d sdk.CompressDecision
		first := len(req.Messages)
		for first > 0 && d.Tokens+req.Messages[first-1].Tokens <= req.BudgetTokens {
			first--
			d.Tokens += req.Messages[first].Tokens
		}
		for i := first; i < len(req.Messages); i++ {
			d.Keep = append(d.Keep, uint32(i))
		}
		return d, nil
	})

	d, err := sdk.CallCompress(sdk.CompressRequest{
		BudgetTokens: 100,
		Messages: []sdk.Message{
			{ID: "a", Role: sdk.RoleUser, Text: "long story", Tokens: 80},
			{ID: "b", Role: sdk.RoleAssistant, Text: "reply", Tokens: 40},
			{ID: "c", Role: sdk.RoleUser, Text: "question", Tokens: 30},
		},
	})
	fmt.Println(d.Keep, d.Tokens, err)
	// Output: [1 2] 70 <nil>
}

// OnInit receives the raw JSON value of "config" from policies.json, so
// a policy is retuned without being rebuilt.
func ExampleOnInit() {
	var cfg struct {
		TTL uint32 `json:"ttl_s"`
	}
	sdk.OnInit(func(config []byte) error {
		return json.Unmarshal(config, &cfg)
	})

	err := sdk.CallInit([]byte(`{"ttl_s": 1800}`))
	fmt.Println(cfg.TTL, err)
	err = sdk.CallInit([]byte(`{"ttl_s": "soon"}`))
	fmt.Println(errors.Is(err, sdk.ErrPolicy))
	// Output:
	// 1800 <nil>
	// true
}

// A handler's error reaches the host, which then serves the kind's
// fail-open decision; CallX report it wrapped in ErrPolicy.
func ExampleCallRoute_error() {
	sdk.HandleRoute(func(req sdk.RouteRequest) (sdk.RouteDecision, error) {
		return sdk.RouteDecision{}, errors.New("model table not configured")
	})
	_, err := sdk.CallRoute(sdk.RouteRequest{Message: "hi"})
	fmt.Println(err)
	// Output: sdk: policy error: model table not configured
}

// Kinds lists the kinds with a registered handler: what the module will
// tell the host it serves.
func ExampleKinds() {
	sdk.HandleCache(func(req sdk.CacheRequest) (sdk.CacheDecision, error) { return sdk.CacheDecision{}, nil })
	for _, k := range sdk.Kinds() {
		fmt.Print(k, " ")
	}
	fmt.Println()
	// Output: cache route compress
}

// LogInfo and its siblings write to the host's structured log, tagged
// with the policy's name and version; natively they write to stderr.
func ExampleLogInfo() {
	sdk.LogInfo("cache rules loaded")
	fmt.Println("logged")
	// Output: logged
}
