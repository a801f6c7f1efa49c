package drill

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
	"github.com/wingman-app/wingate/host/loadgen"
)

// Modes of the fake model server.
const (
	providerEconomyDown int32 = iota // the economy tier's model answers 503
	providerAllDown                  // every model answers 503
	providerUp                       // every model answers
)

// fakeModels is an OpenAI-compatible chat completions server whose models
// fail on command.
type fakeModels struct {
	mode  atomic.Int32
	mu    sync.Mutex
	calls map[string]int // "model status" → count
}

func (f *fakeModels) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, `{"error": {"message": "bad request", "type": "invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	switch m := f.mode.Load(); {
	case m == providerAllDown, m == providerEconomyDown && req.Model == "drill-economy":
		status = http.StatusServiceUnavailable
	}
	f.mu.Lock()
	f.calls[fmt.Sprintf("%s %d", req.Model, status)]++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status != http.StatusOK {
		w.WriteHeader(status)
		fmt.Fprint(w, `{"error": {"message": "the model is overloaded", "type": "server_error"}}`)
		return
	}
	in := 0
	for _, m := range req.Messages {
		in += len(m.Content)/4 + 4
	}
	text := "Try one small step today: say hello to one new person and notice how it went."
	if req.Stream {
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		chunk(map[string]any{"id": "drill", "object": "chat.completion.chunk", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": text}}}})
		chunk(map[string]any{"id": "drill", "object": "chat.completion.chunk", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
		chunk(map[string]any{"id": "drill", "object": "chat.completion.chunk", "model": req.Model, "choices": []any{},
			"usage": map[string]int{"prompt_tokens": in, "completion_tokens": 18, "total_tokens": in + 18}})
		fmt.Fprint(w, "data: [DONE]\n\n")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "drill", "object": "chat.completion", "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text},
			"finish_reason": "stop"}},
		"usage": map[string]int{"prompt_tokens": in, "completion_tokens": 18, "total_tokens": in + 18},
	})
}

func (f *fakeModels) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.calls {
		out[k] = v
	}
	return out
}

const drillTiers = `{"tiers": [
 {"name": "economy", "provider": "openai", "model": "drill-economy", "prices": [{"effective": "2025-01-01", "input_per_mtok": 1, "output_per_mtok": 5}], "context_budget_tokens": 1000, "max_output_tokens": 256},
 {"name": "standard", "provider": "openai", "model": "drill-standard", "prices": [{"effective": "2025-01-01", "input_per_mtok": 3, "output_per_mtok": 15}], "context_budget_tokens": 1500, "max_output_tokens": 256},
 {"name": "premium", "provider": "openai", "model": "drill-premium", "prices": [{"effective": "2025-01-01", "input_per_mtok": 5, "output_per_mtok": 25}], "context_budget_tokens": 2500, "max_output_tokens": 256}
]}`

// TestDrillProviderFailure serves chat from an OpenAI-compatible server
// whose economy model fails during the first load run (another tier must
// answer: no 5xx), whose every model fails next (503 llm_unavailable, the
// user's message kept), and which recovers for a last load run.
func TestDrillProviderFailure(t *testing.T) {
	s := drillShape()
	models := &fakeModels{calls: map[string]int{}}
	srv := httptest.NewServer(models)
	t.Cleanup(srv.Close)
	tiers := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiers, []byte(drillTiers), 0o644); err != nil {
		t.Fatal(err)
	}
	db := database(t)
	h := startServe(t, func(c *app.Config) {
		c.DatabaseURL, c.LLMProvider, c.LLMTiers = db, "openai", tiers
		c.OpenAIBaseURL, c.OpenAIAPIKey = srv.URL+"/v1", "drill"
	})
	mix := loadgen.Mix{loadgen.EpChat: 40, loadgen.EpChallenges: 30, loadgen.EpReputation: 20, loadgen.EpLocationPut: 10}

	// 1. The economy model is down: the next tier answers.
	models.mode.Store(providerEconomyDown)
	l := startLedger(t, h, s.Writers, true)
	half := s
	half.Duration = s.Duration / 2
	rep := startLoad(h, half, mix).wait(t)
	t.Log("phase 1: the economy model answers 503")
	logLoad(t, rep)
	checkChatLoad(t, rep, "with one model down")
	// A small-talk message in a fresh session is routed to economy and
	// answered by the next tier, the failure listed.
	a, err := doJSON(http.MethodPost, h.base+"/api/chat/sessions", token(2), `{"title": "small talk"}`, nil)
	if err != nil || a.Status != http.StatusCreated {
		t.Fatalf("create session = %d %v (%v)", a.Status, a.Body, err)
	}
	a, err = doJSON(http.MethodPost, h.base+"/api/chat/sessions/"+a.Body["id"].(string)+"/messages", token(2), `{"text": "hey!"}`, nil)
	if err != nil || a.Status != http.StatusOK {
		t.Fatalf("small talk with the economy model down = %d %v (%v); want 200 from another tier", a.Status, a.Body, err)
	}
	route, _ := a.Body["route"].(map[string]any)
	reply, _ := a.Body["reply"].(map[string]any)
	fbs, _ := a.Body["fallbacks"].([]any)
	t.Logf("small talk: routed to %v, answered by %v after %d fallback(s) %v", route["tier"], reply["tier"], len(fbs), fbs)
	if route["tier"] == "economy" && (len(fbs) == 0 || reply["tier"] == "economy") {
		t.Errorf("routed to economy while it was down: answered by %v with fallbacks %v; want another tier, the failure listed", reply["tier"], fbs)
	}
	phase1 := models.snapshot()
	t.Logf("model calls: %v", phase1)
	if phase1["drill-economy 503"] == 0 {
		t.Error("the economy model was never called: the failure was not exercised")
	}
	if phase1["drill-economy 200"] != 0 {
		t.Error("the economy model answered while it was down")
	}

	// 2. Every model is down: no fallback exists; 503 JSON, counted.
	l.allow503.Store(true)
	models.mode.Store(providerAllDown)
	a, err = doJSON(http.MethodPost, h.base+"/api/chat/sessions", token(1), `{"title": "outage"}`, nil)
	if err != nil || a.Status != http.StatusCreated {
		t.Fatalf("create session = %d %v (%v)", a.Status, a.Body, err)
	}
	sid, _ := a.Body["id"].(string)
	a, err = doJSON(http.MethodPost, h.base+"/api/chat/sessions/"+sid+"/messages", token(1), `{"text": "is anyone there?"}`, nil)
	if err != nil || a.Status != http.StatusServiceUnavailable || a.Code != "llm_unavailable" {
		t.Errorf("chat with every model down = %d %q (%v); want 503 llm_unavailable", a.Status, a.Code, err)
	}
	sleepPhase(t, "every model down", s.Duration/4)
	cost, err := doJSON(http.MethodGet, h.base+"/api/chat/sessions/"+sid+"/cost", token(1), "", nil)
	if err != nil || cost.Status != http.StatusOK {
		t.Fatalf("session cost = %d %v (%v)", cost.Status, cost.Body, err)
	}
	if n, _ := cost.Body["unanswered_messages"].(float64); n != 1 {
		t.Errorf("unanswered messages = %v; want the user's message kept (1)", cost.Body["unanswered_messages"])
	}

	// 3. The models are back.
	models.mode.Store(providerUp)
	time.Sleep(3 * time.Second) // requests waiting in retries end
	l.allow503.Store(false)
	last := s
	last.Duration = s.Duration / 4
	rep3 := startLoad(h, last, mix).wait(t)
	l.finish()
	t.Log("phase 3: the models are back")
	logLoad(t, rep3)
	checkChatLoad(t, rep3, "after the models returned")
	l.checkAnswers(t)
	l.mu.Lock()
	turns := len(l.chats)
	replyTiers := map[string]int{}
	for _, c := range l.chats {
		replyTiers[c.replyTier]++
	}
	l.mu.Unlock()
	t.Logf("ledger chat turns: %d answered, reply tiers %v; model calls %v; chat 503s while every model was down %d",
		turns, replyTiers, models.snapshot(), l.count("chat", 503))
	l.verify(t, db)
}

// checkChatLoad fails on any chat error (a tier that answers exists), and
// on any 5xx elsewhere other than a 503 (the database not answering in
// time on a starved machine: no fallback exists for a cache miss then).
func checkChatLoad(t *testing.T, rep *loadgen.Report, when string) {
	t.Helper()
	if e := rep.Endpoints[loadgen.EpChat].Errors; len(e) != 0 {
		t.Errorf("chat errors %s: %v; want none (another tier answers)", when, e)
	}
	if n := count5xx(rep.Errors, http.StatusServiceUnavailable); n != 0 || rep.Errors["transport"]+rep.Errors["timeout"] != 0 {
		t.Errorf("errors %s: %v; want no 5xx other than 503 and none without an answer", when, rep.Errors)
	}
	if n := rep.Errors["503"]; n != 0 {
		t.Logf("%d requests answered 503 (database not answering in time) %s", n, when)
	}
}
