package compressor_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tiktoken-go/tokenizer"

	"github.com/wingman-app/wingate/sdk/abi"
)

// The LoCoMo evaluation: every non-adversarial question of every
// conversation, the whole conversation as history ("Speaker: text" per
// turn, o200k token counts), the question as the new message.

// locomoConv is one conversation ready for compress requests.
type locomoConv struct {
	id        string
	msgs      []abi.Message
	index     map[string]int // dia_id -> message index
	total     int64
	questions []locomoQuestion
}

type locomoQuestion struct {
	text     string
	category int
	evidence []int // message indexes; -1 for an evidence id not in the conversation
}

var (
	locomoOnce  sync.Once
	locomoData  []*locomoConv
	locomoErr   error
	tokenCodec  tokenizer.Codec
	errNoLocomo = errors.New("LoCoMo data absent")
)

// repoRoot walks up from the working directory to the go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// loadLocomo reads and tokenises the data once per test binary.
func loadLocomo(t testing.TB) []*locomoConv {
	t.Helper()
	locomoOnce.Do(func() { locomoData, locomoErr = readLocomo() })
	if errors.Is(locomoErr, errNoLocomo) {
		t.Skipf("skipping: %v (expected ../shared/data/locomo/locomo-dev.json next to the repository)", locomoErr)
	}
	if locomoErr != nil {
		t.Fatal(locomoErr)
	}
	return locomoData
}

func readLocomo() ([]*locomoConv, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(root, "..", "shared", "data", "locomo", "locomo-dev.json")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", errNoLocomo, path)
	}
	if err != nil {
		return nil, err
	}
	var samples []struct {
		SampleID     string                     `json:"sample_id"`
		Conversation map[string]json.RawMessage `json:"conversation"`
		QA           []struct {
			Question string   `json:"question"`
			Category int      `json:"category"`
			Evidence []string `json:"evidence"`
		} `json:"qa"`
	}
	if err := json.Unmarshal(raw, &samples); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	codec, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		return nil, err
	}
	tokenCodec = codec
	var convs []*locomoConv
	for _, s := range samples {
		c := &locomoConv{id: s.SampleID, index: map[string]int{}}
		for n := 1; ; n++ {
			rawSession, ok := s.Conversation["session_"+strconv.Itoa(n)]
			if !ok {
				break
			}
			var turns []struct {
				Speaker string `json:"speaker"`
				DiaID   string `json:"dia_id"`
				Text    string `json:"text"`
			}
			if err := json.Unmarshal(rawSession, &turns); err != nil {
				return nil, fmt.Errorf("decode %s session %d: %w", s.SampleID, n, err)
			}
			for _, tr := range turns {
				text := tr.Speaker + ": " + tr.Text
				tokens, err := codec.Count(text)
				if err != nil {
					return nil, err
				}
				role := abi.RoleUser
				if len(c.msgs)%2 == 1 {
					role = abi.RoleAssistant
				}
				c.index[tr.DiaID] = len(c.msgs)
				c.msgs = append(c.msgs, abi.Message{ID: tr.DiaID, Role: role, Text: text, Tokens: uint32(tokens)})
				c.total += int64(tokens)
			}
		}
		for _, q := range s.QA {
			if q.Category == 5 {
				continue
			}
			lq := locomoQuestion{text: q.Question, category: q.Category}
			for _, e := range normaliseEvidence(q.Evidence) {
				i, ok := c.index[e]
				if !ok {
					i = -1
				}
				lq.evidence = append(lq.evidence, i)
			}
			c.questions = append(c.questions, lq)
		}
		convs = append(convs, c)
	}
	return convs, nil
}

// normaliseEvidence repairs the data set's few malformed ids: "D8:6; D9:17"
// (two ids in one) and "D:11:26" (a stray colon). Ids that still name no
// turn stay and count as not recalled.
func normaliseEvidence(ids []string) []string {
	var out []string
	for _, id := range ids {
		for _, part := range strings.Split(id, ";") {
			part = strings.TrimSpace(part)
			part = strings.Replace(part, "D:", "D", 1)
			if part != "" {
				out = append(out, part)
			}
		}
	}
	return out
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
func measure(convs []*locomoConv, frac float64, d decider, checkSummary bool) recallResult {
	r := recallResult{perConv: map[string][2]int{}}
	for _, c := range convs {
		budget := uint32(math.Floor(frac * float64(c.total)))
		for _, q := range c.questions {
			req := abi.CompressRequest{Messages: c.msgs, Query: q.text, BudgetTokens: budget}
			dec := d(&req)
			kept := make(map[int]bool, len(dec.Keep))
			var keptTokens int64
			for _, k := range dec.Keep {
				kept[int(k)] = true
				keptTokens += int64(c.msgs[k].Tokens)
			}
			ok := true
			for _, e := range q.evidence {
				if e < 0 || !kept[e] {
					ok = false
				}
			}
			real := keptTokens
			if checkSummary && dec.Summary != "" {
				n, _ := tokenCodec.Count(dec.Summary)
				real += int64(n)
				r.summaryTokens += int64(n)
			}
			if real > int64(budget) || int64(dec.Tokens) > int64(budget) {
				r.overBudget++
			}
			r.keptTokens += keptTokens
			v := r.perConv[c.id]
			v[1]++
			r.questions++
			if ok {
				v[0]++
				r.recalled++
			}
			r.perConv[c.id] = v
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
	split := func(s string) []string {
		return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		})
	}
	docs := make([][]string, len(msgs))
	df := map[string]int{}
	total := 0
	for i, m := range msgs {
		docs[i] = split(m.Text)
		total += len(docs[i])
		seen := map[string]bool{}
		for _, w := range docs[i] {
			if !seen[w] {
				seen[w] = true
				df[w]++
			}
		}
	}
	avg := float64(total) / float64(len(msgs))
	n := float64(len(msgs))
	q := map[string]bool{}
	for _, w := range split(req.Query) {
		q[w] = true
	}
	type sc struct {
		i int
		s float64
	}
	var ranked []sc
	for i, d := range docs {
		tf := map[string]int{}
		for _, w := range d {
			if q[w] {
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
