package server

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/memstore"
	"github.com/wingman-app/wingate/sdk/abi"
)

// replayConv is one conversation of the replay: optional history imported
// into the session, then user messages sent through the API.
type replayConv struct {
	kind     string
	history  []store.ChatMessage
	messages []string
	purpose  string
}

// replayData builds the replay's conversations from ../shared/data, or
// skips when the data is absent.
func replayData(t *testing.T) []replayConv {
	t.Helper()
	data := filepath.Join(testkit.RepoRoot(t), "..", "shared", "data")
	if d := os.Getenv("WINGATE_DATA_DIR"); d != "" {
		data = d
	}
	need := []string{"clinc150/data_full.json", "clinc150/domains.json", "routellm/gsm8k_responses.csv", "routellm/mmlu", "locomo/locomo-dev.json"}
	for _, n := range need {
		if _, err := os.Stat(filepath.Join(data, n)); err != nil {
			t.Skipf("replay data absent (%s): the replay needs ../shared/data with CLINC150, RouteLLM and LoCoMo (see the data README)", filepath.Join(data, n))
		}
	}
	var convs []replayConv

	// CLINC150 small talk and meta utterances.
	var clinc map[string][][2]string
	readJSON(t, filepath.Join(data, "clinc150/data_full.json"), &clinc)
	var domains map[string][]string
	readJSON(t, filepath.Join(data, "clinc150/domains.json"), &domains)
	small := map[string]bool{}
	for _, d := range []string{"small_talk", "meta"} {
		for _, in := range domains[d] {
			small[in] = true
		}
	}
	var talk []string
	for _, ex := range clinc["test"] {
		if small[ex[1]] {
			talk = append(talk, ex[0])
		}
	}
	if len(talk) < 300 {
		t.Fatalf("only %d small-talk utterances", len(talk))
	}
	pick := func(i int) string { return talk[(i*37)%len(talk)] }
	for i := 0; i < 80; i++ {
		convs = append(convs, replayConv{kind: "small talk", messages: []string{pick(3 * i), pick(3*i + 1), pick(3*i + 2)}})
	}

	// Coaching-style conversations: small talk around a coaching question.
	for i := 0; i < 40; i++ {
		q := coachingPrompts[i%len(coachingPrompts)]
		convs = append(convs, replayConv{kind: "coaching", messages: []string{pick(500 + i), q, pick(600 + i)}})
	}

	// Harder prompts: GSM8K maths and MMLU questions.
	gsm := csvPrompts(t, filepath.Join(data, "routellm/gsm8k_responses.csv"))
	for i := 0; i < 30; i++ {
		convs = append(convs, replayConv{kind: "gsm8k", messages: []string{pick(700 + i), gsm[(i*41)%len(gsm)]}})
	}
	files, _ := filepath.Glob(filepath.Join(data, "routellm/mmlu/mmlu_*.csv"))
	sort.Strings(files)
	for i := 0; i < 30; i++ {
		ps := csvPrompts(t, files[(i*7)%len(files)])
		msg := ps[(i*13)%len(ps)]
		purpose := ""
		if i%5 == 0 {
			purpose = "assessment"
		}
		convs = append(convs, replayConv{kind: "mmlu", messages: []string{msg}, purpose: purpose})
	}

	// LoCoMo: long two-person histories imported into the session, then
	// questions about them, at five cut points of each conversation.
	convs = append(convs, locomoConvs(t, filepath.Join(data, "locomo/locomo-dev.json"))...)
	return convs
}

var coachingPrompts = []string{
	"I freeze up whenever I try to talk to someone new at a party. How can I get past the first thirty seconds?",
	"My wingman challenge this week is to compliment a stranger, but I keep chickening out. Any tips to actually do it?",
	"How do I keep a conversation going when the other person only gives short answers?",
	"I had a great chat with someone at the gym but didn't ask for their number. How do I bring it up next time without being awkward?",
	"Can you help me plan a small confidence challenge for each day of next week?",
	"I get really anxious before networking events for work. What should I do in the hour before I walk in?",
	"How can I tell if someone is interested in continuing the conversation or just being polite?",
	"I want to ask my coworker to grab lunch but I'm worried it'll be weird. How should I phrase it?",
	"What are some good open-ended questions to ask when I meet someone at a coffee shop?",
	"I completed the 'say hi to three strangers' challenge! What should I try next to keep building confidence?",
	"Whenever someone rejects me I replay it in my head for days. How do I let it go faster?",
	"How do I join a group conversation that's already going without interrupting?",
	"My voice gets shaky when I speak up in meetings. What can I practise at home?",
	"I'm moving to a new city next month and don't know anyone. Give me a plan for making friends in the first four weeks.",
	"How do I end a conversation gracefully when I want to move on?",
	"What's a good way to follow up with someone I met at a meetup without seeming too eager?",
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func csvPrompts(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	var out []string
	for i := 0; ; i++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if i > 0 && len(rec) > 0 && strings.TrimSpace(rec[0]) != "" {
			out = append(out, rec[0])
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no prompts", path)
	}
	return out
}

func locomoConvs(t *testing.T, path string) []replayConv {
	t.Helper()
	var samples []struct {
		Conversation map[string]json.RawMessage `json:"conversation"`
		QA           []struct {
			Question string   `json:"question"`
			Evidence []string `json:"evidence"`
			Category int      `json:"category"`
		} `json:"qa"`
	}
	readJSON(t, path, &samples)
	type turn struct {
		Speaker string `json:"speaker"`
		DiaID   string `json:"dia_id"`
		Text    string `json:"text"`
	}
	tokens := map[string]int{}
	var out []replayConv
	for _, s := range samples {
		var speakerA string
		json.Unmarshal(s.Conversation["speaker_a"], &speakerA)
		var turns []turn
		for n := 1; ; n++ {
			raw, ok := s.Conversation["session_"+strconv.Itoa(n)]
			if !ok {
				break
			}
			var ts []turn
			json.Unmarshal(raw, &ts)
			turns = append(turns, ts...)
		}
		index := map[string]int{}
		for i, tr := range turns {
			index[tr.DiaID] = i
		}
		for cut := 1; cut <= 5; cut++ {
			end := len(turns) * cut / 5
			conv := replayConv{kind: "locomo"}
			for _, tr := range turns[:end] {
				role := store.RoleAssistant
				if tr.Speaker == speakerA {
					role = store.RoleUser
				}
				text := tr.Speaker + ": " + tr.Text
				n, ok := tokens[text]
				if !ok {
					n = llm.CountTokens(text)
					tokens[text] = n
				}
				conv.history = append(conv.history, store.ChatMessage{Role: role, Text: text, Tokens: n})
			}
			// Two answerable questions whose evidence lies in the history.
			for qi := cut * 7; len(conv.messages) < 2 && qi < len(s.QA); qi++ {
				qa := s.QA[qi%len(s.QA)]
				if qa.Category == 5 || len(qa.Evidence) == 0 {
					continue
				}
				inside := true
				for _, ev := range qa.Evidence {
					if i, ok := index[ev]; !ok || i >= end {
						inside = false
					}
				}
				if inside {
					conv.messages = append(conv.messages, qa.Question)
				}
			}
			if len(conv.messages) > 0 {
				out = append(out, conv)
			}
		}
	}
	return out
}

// replayDecider returns the policy Engine serving the default route and
// compress policies, policies/route.wasm and policies/compress.wasm (built
// by go generate ./policies), with their configuration from
// policies/policies.json when it exists. WINGATE_REPLAY_POLICIES names
// another policy directory. Deadlines are raised to replayDeadlineMS: the
// replay measures what the policies decide, not how fast (their
// benchmarks do that), and the race detector slows the host side of every
// call.
func replayDecider(t *testing.T) *countingDecider {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(testkit.RepoRoot(t), "policies")
	if d := os.Getenv("WINGATE_REPLAY_POLICIES"); d != "" {
		dir = d
	}
	entries := map[string]policy.PolicyEntry{}
	if b, err := os.ReadFile(filepath.Join(dir, policy.PoliciesFileName)); err == nil {
		pf, err := policy.ParsePoliciesFile(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range pf.Policies {
			entries[e.Kind] = e
		}
	}
	rt, err := policy.NewRuntime(ctx, policy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(policy.EngineOptions{})
	t.Cleanup(func() {
		eng.Close()
		rt.Close(context.Background())
	})
	for _, k := range []abi.Kind{abi.KindRoute, abi.KindCompress} {
		e, ok := entries[k.String()]
		if !ok {
			e = policy.PolicyEntry{Kind: k.String(), Name: k.String(), File: k.String() + ".wasm"}
		}
		e.DeadlineMS = max(e.DeadlineMS, replayDeadlineMS)
		file := filepath.Join(dir, e.File)
		wasm, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("no %s policy: %v (build the policies with go generate ./policies)", k, err)
		}
		v, err := rt.Load(ctx, e.Spec(), wasm)
		if err != nil {
			t.Fatalf("load %s: %v", file, err)
		}
		if err := eng.Replace(k, v); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s policy %s version %s from %s", k, v.Name(), v.Digest(), file)
	}
	return &countingDecider{Decider: eng, outcomes: map[string]int{}}
}

const replayDeadlineMS = 5000

// countingDecider counts the outcomes of the decisions it passes on.
type countingDecider struct {
	policy.Decider
	mu       sync.Mutex
	outcomes map[string]int // "kind/outcome" → count
}

func (d *countingDecider) count(r policy.Result) {
	d.mu.Lock()
	d.outcomes[r.Kind.String()+"/"+r.Outcome.String()]++
	d.mu.Unlock()
}

func (d *countingDecider) Route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, policy.Result) {
	dec, r := d.Decider.Route(ctx, req)
	d.count(r)
	return dec, r
}

func (d *countingDecider) Compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, policy.Result) {
	dec, r := d.Decider.Compress(ctx, req)
	d.count(r)
	return dec, r
}

type replayTotals struct {
	convs, turns         int
	cost, baseline       float64
	context, baseContext int
	tiers                map[string]int
}

// TestChatReplay replays conversations built from ../shared/data through
// the HTTP API (a real listener) with the simulated provider and the
// default route and compress policies, and holds the cost against the
// all-premium uncompressed baseline to ≥ 60% lower and the context
// tokens to ≥ 70% fewer.
func TestChatReplay(t *testing.T) {
	convs := replayData(t)
	if len(convs) < 200 {
		t.Fatalf("only %d conversations", len(convs))
	}
	st := memstore.New()
	const users = 8
	dec := replayDecider(t)
	f := newChatFixture(t, dec, st, users)

	type result struct {
		kind string
		rep  chat.CostReport
		err  error
	}
	results := make([]result, len(convs))
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = result{kind: convs[i].kind}
				results[i].rep, results[i].err = f.replayOne(t, int64(i%users)+1, convs[i], i%10 == 0)
			}
		}()
	}
	for i := range convs {
		work <- i
	}
	close(work)
	wg.Wait()

	byKind := map[string]*replayTotals{}
	total := &replayTotals{tiers: map[string]int{}}
	var kinds []string
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("%s conversation: %v", r.kind, r.err)
		}
		k := byKind[r.kind]
		if k == nil {
			k = &replayTotals{tiers: map[string]int{}}
			byKind[r.kind] = k
			kinds = append(kinds, r.kind)
		}
		for _, tt := range []*replayTotals{k, total} {
			tt.convs++
			tt.turns += r.rep.Turns
			tt.cost += r.rep.CostUSD
			tt.baseline += r.rep.BaselineCostUSD
			tt.context += r.rep.ContextTokens
			tt.baseContext += r.rep.BaselineContextTokens
			for tier, n := range r.rep.Tiers {
				tt.tiers[tier] += n
			}
		}
	}
	line := func(name string, x *replayTotals) {
		t.Logf("%-11s %4d conv %4d turns  cost $%9.5f vs $%9.5f (%5.1f%% lower)  context %8d vs %8d tokens (%5.1f%% fewer)  tiers e/s/p %d/%d/%d",
			name, x.convs, x.turns, x.cost, x.baseline, 100*(1-x.cost/x.baseline), x.context, x.baseContext,
			100*(1-float64(x.context)/float64(x.baseContext)), x.tiers["economy"], x.tiers["standard"], x.tiers["premium"])
	}
	for _, k := range kinds {
		line(k, byKind[k])
	}
	line("TOTAL", total)
	mix := func(tier string) float64 { return 100 * float64(total.tiers[tier]) / float64(total.turns) }
	t.Logf("tier mix: economy %.1f%%, standard %.1f%%, premium %.1f%%", mix("economy"), mix("standard"), mix("premium"))
	stats := f.svc.Stats()
	t.Logf("service: %d turns, %d failed, %d fallbacks, %d summaries written, %d reused", stats.Turns, stats.Failed, stats.Fallbacks, stats.Summaries, stats.SummariesReused)

	t.Logf("policy decisions: %v", dec.outcomes)
	for _, k := range []string{"route", "compress"} {
		if ok, all := dec.outcomes[k+"/ok"], dec.outcomes[k+"/ok"]+dec.outcomes[k+"/fallback"]+dec.outcomes[k+"/timeout"]+dec.outcomes[k+"/trap"]; all == 0 || ok < all*95/100 {
			t.Errorf("%s: %d of %d decisions made by the policy, want ≥ 95%%", k, ok, all)
		}
	}
	if int64(total.turns) != stats.Turns || stats.Failed != 0 {
		t.Errorf("ledger counted %d turns, service %d (%d failed)", total.turns, stats.Turns, stats.Failed)
	}
	if saved := 1 - total.cost/total.baseline; saved < 0.60 {
		t.Errorf("cost only %.1f%% below the all-premium baseline, want ≥ 60%%", 100*saved)
	}
	if fewer := 1 - float64(total.context)/float64(total.baseContext); fewer < 0.70 {
		t.Errorf("context only %.1f%% smaller than uncompressed, want ≥ 70%%", 100*fewer)
	}
	if total.tiers["economy"] == 0 || total.tiers["standard"]+total.tiers["premium"] == 0 {
		t.Errorf("tier mix %v: want economy and stronger tiers used", total.tiers)
	}
}

// replayOne runs one conversation through the API and returns the
// session's cost report.
func (f *chatFixture) replayOne(t *testing.T, user int64, c replayConv, stream bool) (chat.CostReport, error) {
	var rep chat.CostReport
	r := f.do(t, "POST", "/api/chat/sessions", user, `{"title":"`+c.kind+`"}`)
	if r.status != 201 {
		return rep, fmt.Errorf("create session: %d %s", r.status, r.body)
	}
	var sess store.ChatSession
	json.Unmarshal(r.body, &sess)
	for i := range c.history {
		m := c.history[i]
		m.SessionID = sess.ID
		if err := f.st.AppendChatMessage(context.Background(), &m); err != nil {
			return rep, err
		}
	}
	for _, msg := range c.messages {
		body, _ := json.Marshal(map[string]string{"text": msg, "purpose": c.purpose})
		accept := "application/json"
		if stream {
			accept = "text/event-stream"
		}
		r := f.do(t, "POST", "/api/chat/sessions/"+sess.ID+"/messages", user, string(body), "Accept", accept)
		if r.status != 200 {
			return rep, fmt.Errorf("send: %d %s", r.status, r.body)
		}
		if stream {
			evs := readEvents(t, r.body)
			if len(evs) == 0 || evs[len(evs)-1].Event != "done" {
				return rep, fmt.Errorf("stream did not end with done: %s", r.body)
			}
		}
	}
	r = f.do(t, "GET", "/api/chat/sessions/"+sess.ID+"/cost", user, "")
	if r.status != 200 {
		return rep, fmt.Errorf("cost: %d %s", r.status, r.body)
	}
	err := json.Unmarshal(r.body, &rep)
	return rep, err
}
