package evaljson_test

import (
	"encoding/json"
	"fmt"

	"github.com/wingman-app/wingate/host/policy/evaljson"
	"github.com/wingman-app/wingate/sdk/abi"
)

// A compress decision keeps message indexes on the wire and message ids
// in JSON, so converting it needs its request.
func ExampleCompressDecisionJSON() {
	req, err := evaljson.ParseCompressRequest([]byte(`{
		"messages": [
			{"id": "m1", "role": "system", "text": "User is shy at parties.", "tokens": 6},
			{"id": "m2", "role": "user", "text": "Hi!", "tokens": 2},
			{"id": "m3", "role": "assistant", "text": "How did the challenge go?", "tokens": 7}],
		"query": "It went well", "budget_tokens": 20}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	d := abi.CompressDecision{Keep: []uint32{0, 2}, Tokens: 13}
	j, err := evaljson.CompressDecisionJSON(&d, &req)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, _ := json.Marshal(j)
	fmt.Println(string(out))
	// Output:
	// {"keep":["m1","m3"],"summary":"","tokens":13}
}

// Errors name the field.
func ExampleParseRouteRequest() {
	_, err := evaljson.ParseRouteRequest([]byte(`{"message": "hi", "purpose": "gossip"}`))
	fmt.Println(err)
	// Output:
	// evaljson: invalid input: purpose: "gossip" is not one of chat, assessment
}
