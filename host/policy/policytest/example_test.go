package policytest_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// A native route function tested against one case, the way `wingate
// policy test` tests a module.
func ExampleRunCase() {
	route := policytest.Funcs{RouteFn: func(r abi.RouteRequest) (abi.RouteDecision, error) {
		if len(r.Message) > 40 {
			return abi.RouteDecision{Tier: abi.TierStandard, Score: 0.6, Reason: "long"}, nil
		}
		return abi.RouteDecision{Tier: abi.TierEconomy, Score: 0.1, Reason: "short"}, nil
	}}
	c := policytest.Case{
		Name:  "greetings are cheap",
		Input: json.RawMessage(`{"message": "good morning, how do I keep a conversation going?"}`),
		Want:  json.RawMessage(`{"tier": "economy", "score_range": [0, 0.3]}`),
		File:  "route.json",
	}
	fmt.Println(policytest.RunCase(context.Background(), route, 0, c))
	// Output:
	// FAIL route.json: greetings are cheap (route)
	//     tier: got "standard", want "economy"
	//     score: got 0.6, want within [0, 0.3]
	//     input: {"message":"good morning, how do I keep a conversation going?"}
	//     got:   {"tier":"standard","score":0.6,"reason":"long"}
	//     want:  {"tier":"economy","score_range":[0,0.3]}
}

// Decide is one line of `wingate policy eval`.
func ExampleDecide() {
	cache := policytest.Funcs{CacheFn: func(r abi.CacheRequest) (abi.CacheDecision, error) {
		return abi.CacheDecision{Action: abi.CacheLookup, Key: "rep:" + r.User, TTLSeconds: 900, Scope: abi.ScopeUser,
			StaleSeconds: 60, Tags: []string{"user:" + r.User}}, nil
	}}
	out, err := policytest.Decide(context.Background(), cache, abi.KindCache,
		[]byte(`{"method": "GET", "route": "/api/users/:id/reputation", "path": "/api/users/42/reputation", "user": "42"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out))
	// Output:
	// {"action":"lookup","key":"rep:42","ttl_s":900,"scope":"user","stale_s":60,"tags":["user:42"]}
}
