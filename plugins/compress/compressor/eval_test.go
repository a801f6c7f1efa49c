package compressor_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/compress/compressor"
	"github.com/wingman-app/wingate/plugins/compress/internal/evaldata"
	"github.com/wingman-app/wingate/sdk/abi"
)

// tuneConvs are the conversations the shipped configuration was tuned on;
// the others are held out and reported separately.
var tuneConvs = []string{"conv-26", "conv-30", "conv-41"}

func heldOut(convs []*evaldata.Conv) []string {
	var out []string
	for _, c := range convs {
		tuned := false
		for _, id := range tuneConvs {
			tuned = tuned || id == c.ID
		}
		if !tuned {
			out = append(out, c.ID)
		}
	}
	return out
}

// TestLocomoRecall is the policy's evaluation on LoCoMo: evidence recall
// at 10% and 30% of each history's tokens, beside a recent-window baseline
// and a BM25-plus-recent-window baseline measured the same way; that no
// decision goes over its budget once the summary is tokenised for real; and
// that most summary lines keep a name, a date or a number.
func TestLocomoRecall(t *testing.T) {
	convs := loadLocomo(t)
	cfg, err := compressor.ParseConfig(policytest.ShippedConfig(t, "compress"))
	if err != nil {
		t.Fatal(err)
	}
	comp, err := compressor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	policy := func(req *abi.CompressRequest) abi.CompressDecision { return comp.Compress(req) }
	held := heldOut(convs)
	var sb strings.Builder
	fmt.Fprintf(&sb, "LoCoMo evidence recall (%d conversations, %d non-adversarial questions; held out: %s)\n",
		len(convs), countQuestions(convs), strings.Join(held, ", "))
	fmt.Fprintf(&sb, "%-7s %-22s %8s %9s %9s %6s %10s %11s\n", "budget", "method", "recall", "tuned", "held-out", "over", "summary/q", "fact lines")
	targets := map[float64]float64{0.10: 0.75, 0.30: 0.85}
	for _, frac := range []float64{0.10, 0.30} {
		for _, m := range []struct {
			name string
			d    decider
		}{
			{"recent window", recentOnly},
			{"BM25 + recent window", bm25Recent},
			{"compress policy", policy},
		} {
			check := m.name == "compress policy"
			r := measure(convs, frac, m.d, check)
			summary, facts := "-", "-"
			if check {
				summary = fmt.Sprintf("%.0f", float64(r.summaryTokens)/float64(r.questions))
				facts = fmt.Sprintf("%.0f%%", 100*float64(r.factLines)/float64(max(r.summaryLines, 1)))
				if r.summaryLines == 0 || 2*r.factLines < r.summaryLines {
					t.Errorf("at %.0f%%: %d of %d summary lines hold a name, date or number, want at least half",
						frac*100, r.factLines, r.summaryLines)
				}
			}
			fmt.Fprintf(&sb, "%-7s %-22s %7.1f%% %8.1f%% %8.1f%% %6d %10s %11s\n",
				fmt.Sprintf("%.0f%%", frac*100), m.name, 100*r.rate(),
				100*r.convRate(tuneConvs...), 100*r.convRate(held...), r.overBudget, summary, facts)
			if check {
				var per []string
				for _, c := range convs {
					per = append(per, fmt.Sprintf("%s %.1f%%", c.ID, 100*r.convRate(c.ID)))
				}
				fmt.Fprintf(&sb, "%-7s %-22s %s\n", "", "  per conversation", strings.Join(per, ", "))
			}
			if r.overBudget > 0 {
				t.Errorf("%s at %.0f%%: %d decisions over budget", m.name, frac*100, r.overBudget)
			}
			if check && r.rate() < targets[frac] {
				t.Errorf("compress policy at %.0f%%: recall %.1f%%, want >= %.0f%%", frac*100, 100*r.rate(), 100*targets[frac])
			}
		}
	}
	t.Log("\n" + sb.String())
}

func countQuestions(convs []*evaldata.Conv) int {
	n := 0
	for _, c := range convs {
		n += len(c.Questions)
	}
	return n
}
