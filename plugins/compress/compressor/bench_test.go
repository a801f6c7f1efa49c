package compressor_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// syntheticHistory returns a deterministic two-person chat of n turns of
// 8 to 40 words each, with names, numbers and dates sprinkled in.
func syntheticHistory(n int) []abi.Message {
	words := strings.Fields(`we went to the park with kids yesterday and it was great I started a new job
		at the bakery last week my sister Anna visited from Chicago on 12 March we painted the fence
		the dog ran after a ball my friend Tom plays guitar in a band concert tickets cost 40 dollars
		I feel tired but happy work has been busy the garden needs water school starts in September
		our trip to Spain was amazing the food was delicious I read two books this month yoga helps
		me relax the car broke down again we adopted a cat named Luna the weather is cold today`)
	r := rand.New(rand.NewPCG(1, 2))
	msgs := make([]abi.Message, n)
	for i := range msgs {
		var sb strings.Builder
		speaker := "Alex: "
		if i%2 == 1 {
			speaker = "Sam: "
		}
		sb.WriteString(speaker)
		k := 8 + r.IntN(33)
		for j := 0; j < k; j++ {
			if j > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(words[r.IntN(len(words))])
		}
		sb.WriteByte('.')
		text := sb.String()
		msgs[i] = abi.Message{ID: "m" + string(rune('0'+i%10)), Role: abi.Role(i % 2), Text: text, Tokens: uint32(k*13/10 + 3)}
	}
	return msgs
}

// benchDecisions times decisions and reports the median beside the mean.
func benchDecisions(b *testing.B, msgs []abi.Message, queries []string, budget uint32) {
	c := newDefault(b)
	var times []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
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
}

// BenchmarkCompress700 is one decision over a 700-turn history at a 10%
// budget (target: p50 at most 5 ms).
func BenchmarkCompress700(b *testing.B) {
	msgs := syntheticHistory(700)
	var total uint32
	for _, m := range msgs {
		total += m.Tokens
	}
	queries := []string{
		"When did Anna visit from Chicago?", "What is the cat called?",
		"How much did the concert tickets cost?", "What does Tom play?",
	}
	benchDecisions(b, msgs, queries, total/10)
}

// BenchmarkCompressLocomo is the same over LoCoMo's longest conversation
// with its own questions.
func BenchmarkCompressLocomo(b *testing.B) {
	convs := loadLocomo(b)
	longest := convs[0]
	for _, c := range convs {
		if len(c.msgs) > len(longest.msgs) {
			longest = c
		}
	}
	var queries []string
	for _, q := range longest.questions {
		queries = append(queries, q.text)
	}
	b.Logf("%s: %d turns, %d tokens", longest.id, len(longest.msgs), longest.total)
	benchDecisions(b, longest.msgs, queries, uint32(longest.total/10))
}
