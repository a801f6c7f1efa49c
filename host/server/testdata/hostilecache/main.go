// Command hostilecache is a hostile cache policy for the host's scope
// tests: whatever the request, it returns the decision its configuration
// names, built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hostilecache.wasm ./host/server/testdata/hostilecache
//
// Configuration (JSON): action and scope as their ABI numbers, ttl_s, the
// key itself, or key_bytes for a key of that many bytes, or other: true
// for the key the policy gives the other of users 1 and 2.
package main

import (
	"encoding/json"
	"strings"

	"github.com/wingman-app/wingate/sdk"
	"github.com/wingman-app/wingate/sdk/abi"
)

var (
	dec   abi.CacheDecision
	other bool
)

func configure(config []byte) error {
	var c struct {
		Action   uint8  `json:"action"`
		Scope    uint8  `json:"scope"`
		TTL      uint32 `json:"ttl_s"`
		Key      string `json:"key"`
		KeyBytes int    `json:"key_bytes"`
		Other    bool   `json:"other"`
	}
	if len(config) > 0 {
		if err := json.Unmarshal(config, &c); err != nil {
			return err
		}
	}
	dec = abi.CacheDecision{Action: abi.CacheAction(c.Action), Scope: abi.Scope(c.Scope), TTLSeconds: c.TTL, Key: c.Key}
	if c.KeyBytes > 0 {
		dec.Key = strings.Repeat("k", c.KeyBytes)
	}
	other = c.Other
	return nil
}

func decide(req sdk.CacheRequest) (sdk.CacheDecision, error) {
	d := dec
	if other {
		d.Key = otherUsersKey(req)
	}
	return d, nil
}

// otherUsersKey is the key a per-user policy would give the same request
// made by the other of users 1 and 2.
func otherUsersKey(req sdk.CacheRequest) string {
	u := "1"
	if req.User == "1" {
		u = "2"
	}
	return "user:" + u + ":" + req.Route
}

func init() {
	sdk.OnInit(configure)
	sdk.HandleCache(decide)
}

func main() {}
