package chat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/anthropic"
	"github.com/wingman-app/wingate/host/llm/openai"
	"github.com/wingman-app/wingate/host/llm/simulated"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/memstore"
	"github.com/wingman-app/wingate/host/store/pgstore"
	"github.com/wingman-app/wingate/sdk/abi"
)

// fakeDecider routes by a function and compresses with the fail-open
// decision plus a summary naming how many messages it dropped.
type fakeDecider struct {
	route     func(*abi.RouteRequest) abi.RouteDecision
	compress  func(*abi.CompressRequest) abi.CompressDecision
	compCalls atomic.Int32
}

func (f *fakeDecider) Cache(context.Context, *abi.CacheRequest) (abi.CacheDecision, decision.Result) {
	return decision.FallbackCache(), decision.Result{}
}

func (f *fakeDecider) Route(_ context.Context, r *abi.RouteRequest) (abi.RouteDecision, decision.Result) {
	if f.route != nil {
		return f.route(r), decision.Result{Kind: abi.KindRoute, Policy: "fake-route", Version: "v1"}
	}
	if len(r.Message) < 40 {
		return abi.RouteDecision{Tier: abi.TierEconomy, Score: 0.1, Reason: "short"}, decision.Result{Kind: abi.KindRoute, Policy: "fake-route"}
	}
	return abi.RouteDecision{Tier: abi.TierStandard, Score: 0.5, Reason: "long"}, decision.Result{Kind: abi.KindRoute, Policy: "fake-route"}
}

func (f *fakeDecider) Compress(_ context.Context, r *abi.CompressRequest) (abi.CompressDecision, decision.Result) {
	f.compCalls.Add(1)
	if f.compress != nil {
		return f.compress(r), decision.Result{Kind: abi.KindCompress, Policy: "fake-compress"}
	}
	sumText := fmt.Sprintf("Earlier: %d messages about goals.", len(r.Messages))
	sumTok := uint32(llm.CountTokens(sumText))
	inner := *r
	inner.BudgetTokens -= 150 // room for a summary, as real policies reserve
	d := decision.FallbackCompress(&inner)
	d.Summary = sumText
	d.Tokens += sumTok
	return d, decision.Result{Kind: abi.KindCompress, Policy: "fake-compress", Version: "v1"}
}

var _ decision.Decider = (*fakeDecider)(nil)

// recorder is an Observer that keeps everything.
type recorder struct {
	mu    sync.Mutex
	calls []CallEvent
	turns []TurnEvent
}

func (r *recorder) LLMCall(e CallEvent) { r.mu.Lock(); r.calls = append(r.calls, e); r.mu.Unlock() }
func (r *recorder) Turn(e TurnEvent)    { r.mu.Lock(); r.turns = append(r.turns, e); r.mu.Unlock() }

type env struct {
	svc *Service
	st  Store
	sim *simulated.Provider
	obs *recorder
	dec *fakeDecider
}

func newMemStore(t testing.TB) store.Store {
	t.Helper()
	st := memstore.New()
	for _, id := range []int64{1, 2} {
		if _, err := st.CreateUser(context.Background(), store.User{ID: id, Name: fmt.Sprint("user", id)}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func newEnv(t testing.TB, st store.Store, mod func(*Config)) *env {
	t.Helper()
	sim := simulated.New(simulated.Options{})
	e := &env{st: st, sim: sim, obs: &recorder{}, dec: &fakeDecider{}}
	cfg := Config{Store: st, Decider: e.dec, Tiers: llm.DefaultTiers("simulated"),
		Providers: map[string]llm.Provider{"simulated": sim}, Observer: e.obs}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

func (e *env) session(t testing.TB, user int64) string {
	t.Helper()
	s, err := e.svc.CreateSession(context.Background(), user, "test")
	if err != nil {
		t.Fatal(err)
	}
	return s.ID
}

// seed appends n alternating messages of about 60 tokens each.
func (e *env) seed(t testing.TB, sid string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		role := store.RoleUser
		if i%2 == 1 {
			role = store.RoleAssistant
		}
		text := fmt.Sprintf("Message %d: I went to the climbing gym on Tuesday with my friend Sam and we talked about the party next Saturday, where I want to introduce myself to at least three new people.", i)
		m := store.ChatMessage{SessionID: sid, Role: role, Text: text, Tokens: llm.CountTokens(text)}
		if err := e.st.AppendChatMessage(context.Background(), &m); err != nil {
			t.Fatal(err)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12+1e-9*math.Abs(b) }

func TestSendStoresAnswerWithUsageAndCost(t *testing.T) {
	e := newEnv(t, newMemStore(t), nil)
	runSendChecks(t, e)
}

// runSendChecks is the pipeline test run against each store.
func runSendChecks(t *testing.T, e *env) {
	ctx := context.Background()
	sid := e.session(t, 1)
	r, err := e.svc.Send(ctx, 1, sid, Input{Text: "hey there!"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Assistant
	if a.Tier != llm.TierEconomy || a.Provider != "simulated" || a.Model != "claude-haiku-4-5" || !r.Simulated {
		t.Errorf("answer = tier %q provider %q model %q simulated %v", a.Tier, a.Provider, a.Model, r.Simulated)
	}
	if !strings.HasPrefix(a.Text, "[simulated claude-haiku-4-5]") {
		t.Errorf("text not labelled: %q", a.Text)
	}
	wantIn := llm.CountMessages(DefaultSystemPrompt, []llm.Message{{Role: "user", Content: "hey there!"}})
	if a.InputTokens != wantIn || a.OutputTokens != llm.CountTokens(a.Text) || a.ContextTokens != wantIn {
		t.Errorf("usage in %d out %d context %d, want in %d", a.InputTokens, a.OutputTokens, a.ContextTokens, wantIn)
	}
	wantCost := (float64(a.InputTokens)*1 + float64(a.OutputTokens)*5) / 1e6
	wantBase := (float64(a.InputTokens)*5 + float64(a.OutputTokens)*25) / 1e6
	if !near(a.CostUSD, wantCost) || !near(a.BaselineCostUSD, wantBase) {
		t.Errorf("cost %v baseline %v, want %v %v", a.CostUSD, a.BaselineCostUSD, wantCost, wantBase)
	}
	if r.Route.Tier != "economy" || r.Route.Policy != "fake-route" || !r.Compress.Skipped {
		t.Errorf("route %+v compress %+v", r.Route, r.Compress)
	}
	// A long message goes to standard; history is now in the context.
	r2, err := e.svc.Send(ctx, 1, sid, Input{Text: "How do I keep a conversation going when I run out of things to say?"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Assistant.Tier != llm.TierStandard || r2.Compress.HistoryMessages != 2 {
		t.Errorf("second turn: tier %q compress %+v", r2.Assistant.Tier, r2.Compress)
	}
	msgs, err := e.svc.Messages(ctx, 1, sid, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 || msgs[0].Role != "user" || msgs[1].Role != "assistant" || msgs[3].Tier != "standard" || msgs[1].LatencyMS < 0 {
		t.Fatalf("stored messages = %+v", msgs)
	}
	rep, err := e.svc.Cost(ctx, 1, sid)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Turns != 2 || !near(rep.CostUSD, a.CostUSD+r2.Assistant.CostUSD) || rep.Tiers["economy"] != 1 || rep.Tiers["standard"] != 1 || rep.SavedPct <= 0 {
		t.Errorf("cost report = %+v", rep)
	}
	if _, err := e.svc.Send(ctx, 2, sid, Input{Text: "hi"}, nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("other user's session: err = %v", err)
	}
	if _, err := e.svc.Cost(ctx, 2, sid); !errors.Is(err, ErrForbidden) {
		t.Errorf("other user's cost: err = %v", err)
	}
	if _, err := e.svc.Send(ctx, 1, "nope", Input{Text: "hi"}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing session: err = %v", err)
	}
	var ie *InputError
	if _, err := e.svc.Send(ctx, 1, sid, Input{Text: "  "}, nil); !errors.As(err, &ie) || ie.Field != "text" {
		t.Errorf("empty text: err = %v", err)
	}
	if _, err := e.svc.Send(ctx, 1, sid, Input{Text: "x", Purpose: "gossip"}, nil); !errors.As(err, &ie) || ie.Field != "purpose" {
		t.Errorf("bad purpose: err = %v", err)
	}
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	if len(e.obs.turns) != 2 || len(e.obs.calls) != 2 || e.obs.turns[0].Tier != "economy" || e.obs.calls[1].CostUSD <= 0 {
		t.Errorf("observer: turns %+v calls %+v", e.obs.turns, e.obs.calls)
	}
}

func TestCompressionCutsContextAndSummaryIsReused(t *testing.T) {
	e := newEnv(t, newMemStore(t), nil)
	ctx := context.Background()
	sid := e.session(t, 1)
	e.seed(t, sid, 100) // ~4,200 tokens of history
	r, err := e.svc.Send(ctx, 1, sid, Input{Text: "ok"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Assistant
	if r.Compress.Skipped || r.Compress.Kept >= 100 || r.Compress.Summary != "policy" || r.Compress.BudgetTokens != 1000 {
		t.Fatalf("compress = %+v", r.Compress)
	}
	if a.ContextTokens > 1000+a.BaselineContextTokens/20 || a.BaselineContextTokens < 4000 {
		t.Errorf("context %d baseline %d", a.ContextTokens, a.BaselineContextTokens)
	}
	if a.InputTokens != a.ContextTokens {
		t.Errorf("provider counted %d input tokens, pipeline %d", a.InputTokens, a.ContextTokens)
	}
	// Baseline: premium price on the uncompressed input.
	wantBase := (float64(a.InputTokens+a.BaselineContextTokens-a.ContextTokens)*5 + float64(a.OutputTokens)*25) / 1e6
	if !near(a.BaselineCostUSD, wantBase) {
		t.Errorf("baseline %v, want %v", a.BaselineCostUSD, wantBase)
	}
	sum, err := e.st.GetChatSummary(ctx, sid)
	if err != nil || !strings.HasPrefix(sum.Text, "Earlier: 100 messages") || sum.UpToMessageID == 0 {
		t.Fatalf("stored summary = %+v, %v", sum, err)
	}
	// The next turn drops only a few more messages: the summary is reused.
	r2, err := e.svc.Send(ctx, 1, sid, Input{Text: "ok again"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Compress.Summary != "stored" {
		t.Errorf("second turn summary = %q, want stored", r2.Compress.Summary)
	}
	st := e.svc.Stats()
	if st.Summaries != 1 || st.SummariesReused != 1 {
		t.Errorf("stats = %+v", st)
	}
	// Many new messages later the summary is rewritten.
	e.seed(t, sid, 30)
	r3, err := e.svc.Send(ctx, 1, sid, Input{Text: "and now?"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Compress.Summary != "policy" || e.svc.Stats().Summaries != 2 {
		t.Errorf("third turn summary %q stats %+v", r3.Compress.Summary, e.svc.Stats())
	}
}

// scripted is a provider that answers from a function.
type scripted struct {
	name string
	mu   sync.Mutex
	reqs []*llm.Request
	fn   func(req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error)
}

func (s *scripted) Name() string { return s.name }
func (s *scripted) Complete(_ context.Context, req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return s.fn(req, onDelta)
}

func TestModelWrittenSummary(t *testing.T) {
	sc := &scripted{name: "scripted", fn: func(req *llm.Request, _ llm.DeltaFunc) (*llm.Response, error) {
		if req.System == summaryPrompt {
			return &llm.Response{Text: "Sam and the user climb on Tuesdays; party next Saturday.", Usage: llm.Usage{InputTokens: 4000, OutputTokens: 20}}, nil
		}
		return &llm.Response{Text: "answer", Usage: llm.Usage{InputTokens: 900, OutputTokens: 10}}, nil
	}}
	e := newEnv(t, newMemStore(t), func(c *Config) {
		c.Tiers = llm.DefaultTiers("scripted")
		c.Providers = map[string]llm.Provider{"scripted": sc}
	})
	sid := e.session(t, 1)
	e.seed(t, sid, 100)
	r, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "what did I plan?"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Compress.Summary != "model" {
		t.Fatalf("summary source = %q", r.Compress.Summary)
	}
	if len(sc.reqs) != 2 || sc.reqs[0].Model != "claude-haiku-4-5" || !strings.Contains(sc.reqs[0].Messages[0].Content, "New messages:\nuser: Message 0:") {
		t.Fatalf("summary request = %+v", sc.reqs[0])
	}
	if !strings.Contains(sc.reqs[1].System, "Summary of the earlier conversation:\nSam and the user climb") {
		t.Errorf("answer system prompt = %q", sc.reqs[1].System)
	}
	summaryCost := (4000*1 + 20*5) / 1e6
	answerCost := (900*1.0 + 10*5) / 1e6
	if !near(r.Assistant.CostUSD, summaryCost+answerCost) {
		t.Errorf("cost %v, want summary %v + answer %v", r.Assistant.CostUSD, summaryCost, answerCost)
	}
	if _, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "and then?"}, nil); err != nil {
		t.Fatal(err)
	}
	if len(sc.reqs) != 3 {
		t.Errorf("summary recomputed: %d calls", len(sc.reqs))
	}
}

func TestFallbackToAnotherTierIsCounted(t *testing.T) {
	e := newEnv(t, newMemStore(t), nil)
	e.sim.SetDown("claude-haiku-4-5", true)
	sid := e.session(t, 1)
	r, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "hi!"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Route.Tier != "economy" || r.Assistant.Tier != "standard" || len(r.Fallbacks) != 1 || r.Fallbacks[0].Kind != "unavailable" {
		t.Errorf("route %q answered by %q fallbacks %+v", r.Route.Tier, r.Assistant.Tier, r.Fallbacks)
	}
	if st := e.svc.Stats(); st.Fallbacks != 1 || st.Failed != 0 || st.Tiers["standard"].Turns != 1 {
		t.Errorf("stats = %+v", st)
	}
	if e.obs.turns[0].Fallbacks != 1 || e.obs.calls[0].ErrKind != "unavailable" {
		t.Errorf("observer turns %+v calls %+v", e.obs.turns, e.obs.calls)
	}
}

func TestEveryTierDownKeepsUserMessage(t *testing.T) {
	e := newEnv(t, newMemStore(t), nil)
	e.sim.SetDown("*", true)
	sid := e.session(t, 1)
	_, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "is anyone there?"}, nil)
	if !errors.Is(err, ErrAllTiersDown) || !errors.Is(err, llm.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	msgs, _ := e.svc.Messages(context.Background(), 1, sid, 0, 0)
	if len(msgs) != 1 || msgs[0].Text != "is anyone there?" {
		t.Errorf("stored = %+v", msgs)
	}
	if st := e.svc.Stats(); st.Failed != 1 || st.Fallbacks != 3 {
		t.Errorf("stats = %+v", st)
	}
	rep, _ := e.svc.Cost(context.Background(), 1, sid)
	if rep.UnansweredMessages != 1 || rep.Turns != 0 {
		t.Errorf("cost report = %+v", rep)
	}
}

func TestBrokenStreamIsNotRestartedOnAnotherTier(t *testing.T) {
	sc := &scripted{name: "scripted", fn: func(req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error) {
		onDelta("partial ")
		return nil, &llm.Error{Provider: "scripted", Kind: llm.KindStream, Message: "cut"}
	}}
	e := newEnv(t, newMemStore(t), func(c *Config) {
		c.Tiers = llm.DefaultTiers("scripted")
		c.Providers = map[string]llm.Provider{"scripted": sc}
	})
	sid := e.session(t, 1)
	var got strings.Builder
	_, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "hi"}, func(s string) error { got.WriteString(s); return nil })
	if !errors.Is(err, llm.ErrStream) || errors.Is(err, ErrAllTiersDown) || len(sc.reqs) != 1 || got.String() != "partial " {
		t.Errorf("err %v, calls %d, streamed %q", err, len(sc.reqs), got.String())
	}
}

func TestInvalidCompressDecisionFallsBack(t *testing.T) {
	e := newEnv(t, newMemStore(t), nil)
	e.dec.compress = func(r *abi.CompressRequest) abi.CompressDecision {
		return abi.CompressDecision{Keep: []uint32{5, 3, 999}}
	}
	sid := e.session(t, 1)
	e.seed(t, sid, 60)
	r, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "hello"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Compress.Outcome != "fallback" || r.Compress.KeptTokens > r.Compress.BudgetTokens || r.Compress.Kept == 0 {
		t.Errorf("compress = %+v", r.Compress)
	}
}

// TestRealClientsRetryThenFallBack: the economy tier is served by an
// Anthropic endpoint that is overloaded (529 every time), the standard
// tier by an OpenAI-compatible one that works.
func TestRealClientsRetryThenFallBack(t *testing.T) {
	var antCalls, oaiCalls atomic.Int32
	ant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		antCalls.Add(1)
		w.Header().Set("retry-after", "0")
		w.WriteHeader(529)
		io.WriteString(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
	}))
	defer ant.Close()
	oai := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		oaiCalls.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"id\":\"c1\",\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \"}}]}\n\n"+
			"data: {\"id\":\"c1\",\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there\"},\"finish_reason\":\"stop\"}]}\n\n"+
			"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":2,\"total_tokens\":122}}\n\n"+
			"data: [DONE]\n\n")
	}))
	defer oai.Close()
	noSleep := func(context.Context, time.Duration) error { return nil }
	rc := llm.RetryConfig{Attempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: time.Second}
	tiers := llm.DefaultTierList("anthropic")
	tiers[1].Provider, tiers[1].Model = "openai", "gpt-4.1"
	ts, err := llm.NewTiers(tiers)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, newMemStore(t), func(c *Config) {
		c.Tiers = ts
		c.Providers = map[string]llm.Provider{
			"anthropic": llm.NewRetrying(anthropic.New(anthropic.Config{APIKey: "k", BaseURL: ant.URL}), rc, nil).WithSleep(noSleep),
			"openai":    llm.NewRetrying(openai.New(openai.Config{APIKey: "k", BaseURL: oai.URL}), rc, nil).WithSleep(noSleep),
		}
	})
	sid := e.session(t, 1)
	var streamed strings.Builder
	r, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "yo"}, func(s string) error { streamed.WriteString(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if antCalls.Load() != 3 || oaiCalls.Load() != 1 {
		t.Errorf("anthropic calls %d (want 3 attempts), openai calls %d", antCalls.Load(), oaiCalls.Load())
	}
	a := r.Assistant
	if a.Tier != "standard" || a.Provider != "openai" || a.Text != "Hi there" || streamed.String() != "Hi there" || a.InputTokens != 120 || a.OutputTokens != 2 {
		t.Errorf("answer = %+v", a)
	}
	if len(r.Fallbacks) != 1 || r.Fallbacks[0].Tier != "economy" || e.svc.Stats().Fallbacks != 1 {
		t.Errorf("fallbacks = %+v", r.Fallbacks)
	}
}

func TestGateway(t *testing.T) {
	e := newEnv(t, newMemStore(t), nil)
	ctx := context.Background()
	long := make([]llm.Message, 0, 81)
	long = append(long, llm.Message{Role: "system", Content: "You are terse."})
	for i := 0; i < 80; i++ {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		long = append(long, llm.Message{Role: role, Content: fmt.Sprintf("Turn %d: we discussed the hiking trip to Yosemite in June with Priya and Tom, and the budget of 400 dollars.", i)})
	}
	long = append(long, llm.Message{Role: "user", Content: "thanks"})
	tests := []struct {
		name       string
		model      string
		msgs       []llm.Message
		wantTier   string
		wantModel  string
		compressed bool
	}{
		{"auto small talk", "auto", []llm.Message{{Role: "user", Content: "hello!"}}, "economy", "claude-haiku-4-5", false},
		{"auto long history", "auto", long, "economy", "claude-haiku-4-5", true},
		{"tier name", "premium", []llm.Message{{Role: "user", Content: "hello!"}}, "premium", "claude-opus-4-5", false},
		{"tier model passed through", "claude-sonnet-4-5", long, "standard", "claude-sonnet-4-5", false},
		{"unknown model passed through", "my-local-model", []llm.Message{{Role: "user", Content: "hello!"}}, "", "my-local-model", false},
	}
	pass := newEnv(t, newMemStore(t), func(c *Config) { c.PassThroughModels = true })
	if _, err := e.svc.Complete(ctx, CompletionRequest{Model: "my-local-model", Messages: []llm.Message{{Role: "user", Content: "hi"}}}, nil); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("unknown model without pass-through: err = %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := e.svc
			if tt.wantTier == "" {
				svc = pass.svc
			}
			c, err := svc.Complete(ctx, CompletionRequest{Model: tt.model, Messages: tt.msgs}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Tier != tt.wantTier || c.Response.Model != tt.wantModel {
				t.Errorf("tier %q model %q, want %q %q", c.Tier, c.Response.Model, tt.wantTier, tt.wantModel)
			}
			if got := c.ContextTokens < c.BaselineContextTokens; got != tt.compressed {
				t.Errorf("context %d baseline %d, compressed = %v", c.ContextTokens, c.BaselineContextTokens, got)
			}
			if c.Response.Usage.InputTokens != c.ContextTokens {
				t.Errorf("provider input %d, context %d", c.Response.Usage.InputTokens, c.ContextTokens)
			}
		})
	}
	var ie *InputError
	if _, err := e.svc.Complete(ctx, CompletionRequest{Model: "auto", Messages: []llm.Message{{Role: "assistant", Content: "x"}}}, nil); !errors.As(err, &ie) {
		t.Errorf("last message assistant: err = %v", err)
	}
}

// TestGatewayParams: parameters reach the provider or are refused by
// name; a conversation with tools goes verbatim and its calls come back.
func TestGatewayParams(t *testing.T) {
	e := newEnv(t, newMemStore(t), nil)
	ctx := context.Background()
	ask := []llm.Message{{Role: "user", Content: "What is the weather in Oslo?"}}
	var ue *UnsupportedError
	for _, p := range []struct {
		name   string
		params llm.Params
	}{{"response_format", llm.Params{ResponseFormat: []byte(`{"type":"json_object"}`)}},
		{"frequency_penalty", llm.Params{FrequencyPenalty: new(0.5)}}} {
		for _, model := range []string{"auto", "economy", "claude-haiku-4-5"} {
			_, err := e.svc.Complete(ctx, CompletionRequest{Model: model, Messages: ask, Params: p.params}, nil)
			if !errors.As(err, &ue) || ue.Param != p.name || ue.Provider != "simulated" {
				t.Errorf("%s to %s: err = %v", p.name, model, err)
			}
		}
	}
	// A participant name is a parameter too: the simulated provider takes
	// it, a provider that says nothing of its features takes nothing.
	named := []llm.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi", Name: "sam"}}
	if _, err := e.svc.Complete(ctx, CompletionRequest{Model: "auto", Messages: named}, nil); err != nil {
		t.Errorf("a name to the simulated provider: %v", err)
	}
	bare := newEnv(t, newMemStore(t), func(c *Config) {
		c.Providers = map[string]llm.Provider{"simulated": &userRecorder{Provider: simulated.New(simulated.Options{})}}
	})
	if _, err := bare.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: named}, nil); !errors.As(err, &ue) || ue.Param != "messages[1].name" {
		t.Errorf("a name to a provider without names: err = %v", err)
	}
	if _, err := bare.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: ask, Params: llm.Params{Seed: new(int64(3))}}, nil); !errors.As(err, &ue) || ue.Param != "seed" {
		t.Errorf("a seed to a provider without features: err = %v", err)
	}
	// A temperature above 1 needs a provider that takes it.
	if _, err := bare.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: ask, Temperature: new(1.5)}, nil); !errors.As(err, &ue) || ue.Param != "temperature" {
		t.Errorf("temperature 1.5 to a provider without features: err = %v", err)
	}
	if _, err := bare.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: ask, Temperature: new(1.0)}, nil); err != nil {
		t.Errorf("temperature 1 to any provider: err = %v", err)
	}
	if _, err := e.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: ask, Temperature: new(1.5)}, nil); err != nil {
		t.Errorf("temperature 1.5 to the simulated provider: err = %v", err)
	}
	tools := []llm.Tool{{Name: "get_weather", Parameters: []byte(`{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}`)}}
	c, err := e.svc.Complete(ctx, CompletionRequest{Model: "auto", Messages: ask, Params: llm.Params{Tools: tools, Stop: []string{"x"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Response
	if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != "get_weather" || r.ToolCalls[0].ID == "" ||
		r.ToolCalls[0].Arguments != `{"city":"What is the weather in Oslo?","days":1}` || llm.FinishReason(r.StopReason) != llm.FinishToolCalls {
		t.Fatalf("tool call %+v, stop %q", r.ToolCalls, r.StopReason)
	}
	// The result goes back verbatim; the model answers in text.
	round := append(ask, llm.Message{Role: "assistant", ToolCalls: r.ToolCalls},
		llm.Message{Role: "tool", ToolCallID: r.ToolCalls[0].ID, Content: "4 degrees and rain"})
	c, err = e.svc.Complete(ctx, CompletionRequest{Model: "auto", Messages: round, Params: llm.Params{Tools: tools}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Response.Text == "" || len(c.Response.ToolCalls) != 0 || llm.FinishReason(c.Response.StopReason) != llm.FinishStop {
		t.Errorf("answer after the tool: %+v", c.Response)
	}
	if c.Response.Usage.InputTokens != llm.CountMessages("", round) || c.ContextTokens != c.BaselineContextTokens {
		t.Errorf("not verbatim: provider input %d, conversation %d, context %d/%d", c.Response.Usage.InputTokens,
			llm.CountMessages("", round), c.ContextTokens, c.BaselineContextTokens)
	}
	// max_tokens truncation and stop sequences are reported as such.
	c, err = e.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: ask, MaxTokens: 5}, nil)
	if err != nil || llm.FinishReason(c.Response.StopReason) != llm.FinishLength || c.Response.Usage.OutputTokens > 5 {
		t.Errorf("max_tokens 5: %+v, %v", c, err)
	}
	full, _ := e.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: ask}, nil)
	if llm.FinishReason(full.Response.StopReason) != llm.FinishStop {
		t.Errorf("whole answer: stop %q", full.Response.StopReason)
	}
	words := strings.Fields(full.Response.Text)
	c, _ = e.svc.Complete(ctx, CompletionRequest{Model: "economy", Messages: ask, Params: llm.Params{Stop: []string{words[3]}}}, nil)
	if c.Response.StopReason != "stop_sequence" || strings.Contains(c.Response.Text, words[3]) || llm.FinishReason(c.Response.StopReason) != llm.FinishStop {
		t.Errorf("stop %q: %q, %q", words[3], c.Response.Text, c.Response.StopReason)
	}
}

// TestPipelineOnPostgres runs the pipeline checks against PostgreSQL, on a
// database of the test's own.
func TestPipelineOnPostgres(t *testing.T) {
	st := openPG(t)
	for _, id := range []int64{1, 2} {
		if _, err := st.CreateUser(context.Background(), store.User{ID: id, Name: fmt.Sprint("user", id)}); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, st, nil)
	runSendChecks(t, e)
	// Summaries persist too.
	sid := e.session(t, 1)
	e.seed(t, sid, 100)
	if _, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "ok"}, nil); err != nil {
		t.Fatal(err)
	}
	if sum, err := st.GetChatSummary(context.Background(), sid); err != nil || sum.Text == "" {
		t.Errorf("summary on PostgreSQL = %+v, %v", sum, err)
	}
	e.sim.SetDown("*", true)
	if _, err := e.svc.Send(context.Background(), 1, sid, Input{Text: "still there?"}, nil); !errors.Is(err, ErrAllTiersDown) {
		t.Fatalf("err = %v", err)
	}
	msgs, _ := e.svc.Messages(context.Background(), 1, sid, 0, 0)
	if last := msgs[len(msgs)-1]; last.Text != "still there?" || last.Role != "user" {
		t.Errorf("last stored message = %+v", last)
	}
}

func pgAdminURL() string {
	if u := os.Getenv("WINGATE_TEST_PG"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// openPG creates a database for t, migrates it, and drops it at the end.
func openPG(t *testing.T) *pgstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, pgAdminURL())
	if err != nil {
		t.Fatalf("connect to PostgreSQL at %s: %v", pgAdminURL(), err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "wingate_chat_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, pgAdminURL())
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, _ := url.Parse(pgAdminURL())
	u.Path = "/" + name
	st, err := pgstore.Open(ctx, pgstore.Config{URL: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

// userRecorder is a provider that notes the user field of every call.
type userRecorder struct {
	llm.Provider
	mu    sync.Mutex
	users []string
}

func (r *userRecorder) Complete(ctx context.Context, req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error) {
	r.mu.Lock()
	r.users = append(r.users, req.User)
	r.mu.Unlock()
	return r.Provider.Complete(ctx, req, onDelta)
}

// TestUpstreamUser: a provider is told a keyed hash of the user, never
// the id, on the coach's messages and on gateway requests (routed and
// passed through); the hash is stable per key and differs per user and
// per key; without UpstreamUser it is told nothing.
func TestUpstreamUser(t *testing.T) {
	ctx := context.Background()
	calls := func(up func(string) string) []string {
		rec := &userRecorder{Provider: simulated.New(simulated.Options{})}
		e := newEnv(t, newMemStore(t), func(c *Config) {
			c.Providers = map[string]llm.Provider{"simulated": rec}
			c.UpstreamUser = up
			c.PassThroughModels = true
		})
		sid := e.session(t, 1)
		if _, err := e.svc.Send(ctx, 1, sid, Input{Text: "hello"}, nil); err != nil {
			t.Fatal(err)
		}
		for _, model := range []string{"auto", "my-local-model"} {
			for _, user := range []string{"1", "1:alice@example.com", "2"} {
				if _, err := e.svc.Complete(ctx, CompletionRequest{Model: model, User: user, Messages: []llm.Message{{Role: "user", Content: "hi"}}}, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		return rec.users
	}
	hashed := calls(HashUser([]byte("key one")))
	if len(hashed) != 7 {
		t.Fatalf("%d calls", len(hashed))
	}
	for i, u := range hashed {
		if len(u) != 34 || !strings.HasPrefix(u, "u-") || strings.Contains(u, "alice") || u == "1" || u == "2" {
			t.Errorf("call %d: the provider was told %q", i, u)
		}
	}
	// Send's user 1 and the gateway's "1" are the same user.
	if hashed[0] != hashed[1] || hashed[1] != hashed[4] || hashed[1] == hashed[2] || hashed[1] == hashed[3] || hashed[2] != hashed[5] {
		t.Errorf("hashes not stable per user or not distinct: %q", hashed)
	}
	other := calls(HashUser([]byte("key two")))
	if other[0] == hashed[0] {
		t.Errorf("the hash does not depend on the key")
	}
	for i, u := range calls(nil) {
		if u != "" {
			t.Errorf("call %d: without UpstreamUser the provider was told %q", i, u)
		}
	}
}
