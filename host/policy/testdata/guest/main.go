// Command guest is the test policy of package policy's tests: one module
// that handles every kind and whose behaviour is chosen by its
// configuration, so that the tests build a single module.
//
// Configuration: {"mode": "ok"|"loop"|"bomb"|"panic"|"error"|"slow"|"bad", "tag": "..."}
//   - ok: minimal decisions; route reason and cache key carry tag.
//   - loop: spins forever in every decision.
//   - bomb: allocates without bound.
//   - panic: calls a nil function (a runtime panic recovered by the SDK as an error)
//   - trap: exits the process (os.Exit), which the host sees as a trap.
//   - error: returns an error.
//   - slow: burns about 1 ms of CPU per decision.
//   - bad: returns decisions the host must reject.
//
// Built by the tests with:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o guest.wasm ./testdata/guest
package main

import (
	"errors"
	"os"
	"strings"

	"github.com/wingman-app/wingate/sdk"
)

var (
	mode    string
	tag     string
	mainRan bool
	sink    [][]byte
)

// parse reads the two string fields without encoding/json, so the guest
// stays small.
func parse(cfg string, key string) string {
	i := strings.Index(cfg, `"`+key+`"`)
	if i < 0 {
		return ""
	}
	rest := cfg[i+len(key)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	rest = rest[j+1:]
	k := strings.IndexByte(rest, '"')
	if k < 0 {
		return ""
	}
	return rest[:k]
}

var spin uint64

func misbehave() error {
	switch mode {
	case "loop":
		for {
			spin++
		}
	case "bomb":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "panic":
		var f func()
		f()
	case "trap":
		os.Exit(3)
	case "error":
		return errors.New("configured to fail")
	case "slow":
		for i := 0; i < 2_000_000; i++ {
			spin += uint64(i)
		}
	}
	return nil
}

func init() {
	sdk.OnInit(func(config []byte) error {
		mode = parse(string(config), "mode")
		tag = parse(string(config), "tag")
		if mode == "badinit" {
			return errors.New("bad configuration")
		}
		sdk.LogInfo("initialised in mode " + mode)
		return nil
	})
	sdk.HandleCache(func(req sdk.CacheRequest) (sdk.CacheDecision, error) {
		if err := misbehave(); err != nil {
			return sdk.CacheDecision{}, err
		}
		if mode == "mainran" && !mainRan {
			return sdk.CacheDecision{}, errors.New("main did not run")
		}
		return sdk.CacheDecision{Action: sdk.CacheLookup, Key: req.Path, TTLSeconds: 60, Scope: sdk.ScopeGlobal}, nil
	})
	sdk.HandleRoute(func(req sdk.RouteRequest) (sdk.RouteDecision, error) {
		if err := misbehave(); err != nil {
			return sdk.RouteDecision{}, err
		}
		words := 1
		for i := 0; i < len(req.Message); i++ {
			if req.Message[i] == ' ' {
				words++
			}
		}
		tier := sdk.TierEconomy
		if words > 50 {
			tier = sdk.TierStandard
		}
		return sdk.RouteDecision{Tier: tier, Score: float64(words%100) / 100, Reason: tag}, nil
	})
	sdk.HandleCompress(func(req sdk.CompressRequest) (sdk.CompressDecision, error) {
		if err := misbehave(); err != nil {
			return sdk.CompressDecision{}, err
		}
		if mode == "bad" {
			return sdk.CompressDecision{Keep: []uint32{uint32(len(req.Messages)) + 5}, Tokens: req.BudgetTokens + 1}, nil
		}
		var d sdk.CompressDecision
		for i := len(req.Messages) - 1; i >= 0; i-- {
			t := req.Messages[i].Tokens
			if d.Tokens+t > req.BudgetTokens {
				break
			}
			d.Tokens += t
			d.Keep = append(d.Keep, uint32(i))
		}
		for i, j := 0, len(d.Keep)-1; i < j; i, j = i+1, j-1 {
			d.Keep[i], d.Keep[j] = d.Keep[j], d.Keep[i]
		}
		return d, nil
	})
}

func main() { mainRan = true }
