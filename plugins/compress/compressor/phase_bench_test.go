package compressor

import (
	"testing"

	"github.com/wingman-app/wingate/plugins/compress/internal/evaldata"
)

// Benchmarks of the decision's phases, to see where the time goes (run
// them under GOOS=js or wasip1 as well as natively).

func BenchmarkPhaseAnalyse(b *testing.B) {
	msgs, _ := evaldata.Synthetic(700)
	c, _ := New(Default())
	for b.Loop() {
		c.release(c.analyse(msgs))
	}
}

func BenchmarkPhaseScore(b *testing.B) {
	msgs, qs := evaldata.Synthetic(700)
	c, _ := New(Default())
	for b.Loop() {
		a, _, _ := c.score(msgs, qs[0])
		c.release(a)
	}
}

func BenchmarkPhaseAll(b *testing.B) {
	msgs, qs := evaldata.Synthetic(700)
	c, _ := New(Default())
	var total uint32
	for _, m := range msgs {
		total += m.Tokens
	}
	for b.Loop() {
		req := abiRequest(msgs, qs[0], total/10)
		c.Compress(&req)
	}
}
