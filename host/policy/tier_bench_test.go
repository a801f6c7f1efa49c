package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// BenchmarkTierDecision prices a decision of each of the repository's
// policies (as policies.json serves them) on both tiers, one call at a
// time through the Engine: compiled, and interpreted as a tiered start
// serves them until compiled. Needs go generate ./policies.
//
//	go test ./host/policy -run '^$' -bench TierDecision -benchtime 2s
func BenchmarkTierDecision(b *testing.B) {
	dir := filepath.Join("..", "..", "policies")
	f, err := ReadPoliciesFile(dir)
	if err != nil {
		b.Skip(err)
	}
	compress := abi.CompressRequest{Query: "what did I say about my sister?", BudgetTokens: 1500}
	for i := range 40 {
		compress.Messages = append(compress.Messages, abi.Message{ID: "m" + string(rune('a'+i%26)), Role: abi.Role(i % 2), Text: message500[:200], Tokens: 50})
	}
	route := abi.RouteRequest{Message: message500, HistoryTurns: 4, HistoryTokens: 300}
	for _, tier := range tiers {
		rt := newRuntime(b, Options{interpretOnly: tier.opts.interpretOnly, Logger: discardLogger()})
		for _, p := range f.Policies {
			wasm, err := os.ReadFile(filepath.Join(dir, p.File))
			if err != nil {
				b.Skipf("%v (run go generate ./policies)", err)
			}
			kind, _ := abi.ParseKind(p.Kind)
			b.Run(p.Kind+"/"+tier.name, func(b *testing.B) {
				spec := p.Spec()
				// The shipped deadlines; the benchmark fails on a
				// fallback, which an interpreted call past them is.
				spec.MinInstances, spec.AcquireTimeout = 1, time.Minute
				v, err := rt.Load(context.Background(), spec, wasm)
				if err != nil {
					b.Fatal(err)
				}
				defer v.Close()
				e := NewEngine(EngineOptions{Logger: discardLogger()})
				if _, err := e.Activate(kind, v); err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				decide := func() Outcome {
					var r Result
					switch kind {
					case abi.KindCache:
						_, r = e.Cache(ctx, &cacheReq)
					case abi.KindRoute:
						_, r = e.Route(ctx, &route)
					case abi.KindCompress:
						_, r = e.Compress(ctx, &compress)
					}
					return r.Outcome
				}
				decide() // an instance's first call warms it
				b.ReportAllocs()
				m := startCPU(b)
				defer m.report(b)
				for b.Loop() {
					if o := decide(); o != OutcomeOK {
						b.Fatal(o)
					}
				}
			})
		}
	}
}
