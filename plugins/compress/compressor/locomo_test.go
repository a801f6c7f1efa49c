package compressor_test

import (
	"errors"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/plugins/compress/internal/evaldata"
	"github.com/wingman-app/wingate/sdk/abi"
)

// The LoCoMo evaluation: every non-adversarial question of every
// conversation, the whole conversation as history ("Speaker: text" per
// turn, o200k token counts), the question as the new message.

// loadLocomo returns the conversations or skips the test when the data
// set is absent.
func loadLocomo(t testing.TB) []*evaldata.Conv {
	t.Helper()
	convs, err := evaldata.LoCoMo()
	if errors.Is(err, evaldata.ErrAbsent) {
		t.Skipf("skipping: %v (expected ../shared/data/locomo/locomo-dev.json next to the repository)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return convs
}

// decider is anything that makes a compress decision.
type decider func(req *abi.CompressRequest) abi.CompressDecision

// recallResult is the outcome of one method at one budget.
type recallResult struct {
	questions, recalled int
	perConv             map[string][2]int // conv -> {recalled, questions}
	overBudget          int               // decisions whose real token count exceeded the budget
	keptTokens          int64
	summaryTokens       int64
	summaryLines        int // lines of all summaries
	factLines           int // of which hold a number, a date word or a name
}

func (r recallResult) rate() float64 {
	if r.questions == 0 {
		return 0
	}
	return float64(r.recalled) / float64(r.questions)
}

func (r recallResult) convRate(ids ...string) float64 {
	rec, n := 0, 0
	for _, id := range ids {
		v := r.perConv[id]
		rec += v[0]
		n += v[1]
	}
	if n == 0 {
		return 0
	}
	return float64(rec) / float64(n)
}

// measure runs d over every question of convs at budget frac of each
// history. checkSummary counts the summary's real tokens (slower).
func measure(convs []*evaldata.Conv, frac float64, d decider, checkSummary bool) recallResult {
	r := recallResult{perConv: map[string][2]int{}}
	codec, _ := evaldata.Codec()
	for _, c := range convs {
		budget := uint32(math.Floor(frac * float64(c.Total)))
		for _, q := range c.Questions {
			req := abi.CompressRequest{Messages: c.Msgs, Query: q.Text, BudgetTokens: budget}
			dec := d(&req)
			kept := make(map[int]bool, len(dec.Keep))
			var keptTokens int64
			for _, k := range dec.Keep {
				kept[int(k)] = true
				keptTokens += int64(c.Msgs[k].Tokens)
			}
			ok := true
			for _, e := range q.Evidence {
				if e < 0 || !kept[e] {
					ok = false
				}
			}
			real := keptTokens
			if checkSummary && dec.Summary != "" {
				for _, line := range strings.Split(dec.Summary, "\n") {
					r.summaryLines++
					if lineHasFact(line) {
						r.factLines++
					}
				}
				n, _ := codec.Count(dec.Summary)
				real += int64(n)
				r.summaryTokens += int64(n)
			}
			if real > int64(budget) || int64(dec.Tokens) > int64(budget) {
				r.overBudget++
			}
			r.keptTokens += keptTokens
			v := r.perConv[c.ID]
			v[1]++
			r.questions++
			if ok {
				v[0]++
				r.recalled++
			}
			r.perConv[c.ID] = v
		}
	}
	return r
}

// recentOnly keeps the most recent messages that fit.
func recentOnly(req *abi.CompressRequest) abi.CompressDecision {
	var d abi.CompressDecision
	var used uint32
	i := len(req.Messages) - 1
	for ; i >= 0 && used+req.Messages[i].Tokens <= req.BudgetTokens; i-- {
		used += req.Messages[i].Tokens
	}
	for j := i + 1; j < len(req.Messages); j++ {
		d.Keep = append(d.Keep, uint32(j))
	}
	d.Tokens = used
	return d
}

// bm25Recent is plain BM25 over lowercase alphanumeric words (no stemming,
// no stopwords, k1 1.2, b 0.75) plus a recent window of a tenth of the
// budget; turns are taken by score while they fit.
func bm25Recent(req *abi.CompressRequest) abi.CompressDecision {
	msgs := req.Messages
	if len(msgs) == 0 {
		return abi.CompressDecision{}
	}
	budget := int64(req.BudgetTokens)
	kept := make([]bool, len(msgs))
	var used int64
	for i := len(msgs) - 1; i >= 0; i-- {
		t := int64(msgs[i].Tokens)
		if used+t > budget/10 {
			break
		}
		kept[i] = true
		used += t
	}
	ix := bm25Index(msgs)
	docs, df, avg := ix.docs, ix.df, ix.avg
	n := float64(len(msgs))
	q := map[string]bool{}
	for _, w := range bm25Split(req.Query) {
		q[w] = true
	}
	type sc struct {
		i int
		s float64
	}
	var ranked []sc
	for i, d := range docs {
		var tf map[string]int
		for _, w := range d {
			if q[w] {
				if tf == nil {
					tf = map[string]int{}
				}
				tf[w]++
			}
		}
		s := 0.0
		for w, f := range tf {
			idf := math.Log(1 + (n-float64(df[w])+0.5)/(float64(df[w])+0.5))
			s += idf * float64(f) * 2.2 / (float64(f) + 1.2*(0.25+0.75*float64(len(d))/avg))
		}
		if s > 0 {
			ranked = append(ranked, sc{i, s})
		}
	}
	sort.Slice(ranked, func(a, b int) bool { return ranked[a].s > ranked[b].s })
	for _, r := range ranked {
		t := int64(msgs[r.i].Tokens)
		if !kept[r.i] && used+t <= budget {
			kept[r.i] = true
			used += t
		}
	}
	var d abi.CompressDecision
	for i, k := range kept {
		if k {
			d.Keep = append(d.Keep, uint32(i))
		}
	}
	d.Tokens = uint32(used)
	return d
}

// bm25Split is the baseline's tokenizer: lowercase alphanumeric runs.
func bm25Split(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
}

// bm25Idx is the baseline's index of one history.
type bm25Idx struct {
	docs [][]string
	df   map[string]int
	avg  float64
}

var (
	bm25Mu    sync.Mutex
	bm25Cache = map[*abi.Message]*bm25Idx{}
)

// bm25Index builds the baseline's index of msgs once per history (the
// evaluation asks many questions of each).
func bm25Index(msgs []abi.Message) *bm25Idx {
	bm25Mu.Lock()
	defer bm25Mu.Unlock()
	if ix, ok := bm25Cache[&msgs[0]]; ok && len(ix.docs) == len(msgs) {
		return ix
	}
	ix := &bm25Idx{docs: make([][]string, len(msgs)), df: map[string]int{}}
	total := 0
	for i, m := range msgs {
		ix.docs[i] = bm25Split(m.Text)
		total += len(ix.docs[i])
		seen := map[string]bool{}
		for _, w := range ix.docs[i] {
			if !seen[w] {
				seen[w] = true
				ix.df[w]++
			}
		}
	}
	ix.avg = float64(total) / float64(len(msgs))
	bm25Cache[&msgs[0]] = ix
	return ix
}

var dateWordSet = map[string]bool{
	"yesterday": true, "tomorrow": true, "ago": true, "weekend": true, "week": true, "month": true, "year": true,
	"monday": true, "tuesday": true, "wednesday": true, "thursday": true, "friday": true, "saturday": true, "sunday": true,
	"january": true, "february": true, "march": true, "april": true, "may": true, "june": true, "july": true,
	"august": true, "september": true, "october": true, "november": true, "december": true,
}

// lineHasFact reports whether a summary line ("Speaker: sentence") holds
// a number, a date word or a capitalised word other than its first.
func lineHasFact(line string) bool {
	if i := strings.Index(line, ": "); i >= 0 {
		line = line[i+2:]
	}
	for j, w := range strings.Fields(line) {
		w = strings.Trim(w, ".,!?;:'\"()")
		if w == "" {
			continue
		}
		if strings.ContainsAny(w, "0123456789") || dateWordSet[strings.ToLower(w)] {
			return true
		}
		if j > 0 && w[0] >= 'A' && w[0] <= 'Z' && w != "I" && !strings.HasPrefix(w, "I'") {
			return true
		}
	}
	return false
}
