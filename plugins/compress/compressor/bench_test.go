package compressor_test

import (
	"slices"
	"testing"
	"time"

	"github.com/wingman-app/wingate/plugins/compress/compressor"
	"github.com/wingman-app/wingate/plugins/compress/internal/evaldata"
	"github.com/wingman-app/wingate/sdk/abi"
)

// benchDecisions times decisions over one history with rotating queries
// and reports the median and the fastest beside the mean. "cold" turns the
// memo off, so every decision analyses the whole history; "warm" keeps it
// on, as for a chat that re-sends its history each turn.
func benchDecisions(b *testing.B, msgs []abi.Message, queries []string, budget uint32) {
	for _, mode := range []string{"cold", "warm"} {
		b.Run(mode, func(b *testing.B) {
			cfg := compressor.Default()
			if mode == "cold" {
				cfg.MemoMessages = 0
			}
			c, err := compressor.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			var times []time.Duration
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req := abi.CompressRequest{Messages: msgs, Query: queries[i%len(queries)], BudgetTokens: budget}
				start := time.Now()
				d := c.Compress(&req)
				times = append(times, time.Since(start))
				if d.Tokens > budget {
					b.Fatalf("tokens %d over budget %d", d.Tokens, budget)
				}
				i++
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(times[0].Microseconds())/1000, "min-ms")
		})
	}
}

// BenchmarkCompress700 is one decision over a 700-turn synthetic history
// at a 10% budget (target: p50 at most 5 ms).
func BenchmarkCompress700(b *testing.B) {
	msgs, queries := evaldata.Synthetic(700)
	var total uint32
	for _, m := range msgs {
		total += m.Tokens
	}
	benchDecisions(b, msgs, queries, total/10)
}

// BenchmarkCompressLocomo is the same over LoCoMo's longest conversation
// with its own questions.
func BenchmarkCompressLocomo(b *testing.B) {
	convs := loadLocomo(b)
	longest := convs[0]
	for _, c := range convs {
		if len(c.Msgs) > len(longest.Msgs) {
			longest = c
		}
	}
	var queries []string
	for _, q := range longest.Questions {
		queries = append(queries, q.Text)
	}
	b.Logf("%s: %d turns, %d tokens", longest.ID, len(longest.Msgs), longest.Total)
	benchDecisions(b, longest.Msgs, queries, uint32(longest.Total/10))
}
