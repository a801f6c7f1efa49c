package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/simulated"
	"github.com/wingman-app/wingate/host/llm/sse"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/memstore"
	"github.com/wingman-app/wingate/sdk/abi"
)

// chatFixture is a real listener serving the chat endpoints over a memory
// store and the simulated provider.
type chatFixture struct {
	url    string
	tokens map[int64]string
	sim    *simulated.Provider
	svc    *chat.Service
	st     store.Store
}

// lengthRouter routes short messages to economy, long ones to standard,
// and assessments to premium.
type lengthRouter struct{}

func (lengthRouter) Cache(context.Context, *abi.CacheRequest) (abi.CacheDecision, policy.Result) {
	return policy.FallbackCache(), policy.Result{}
}

func (lengthRouter) Route(_ context.Context, r *abi.RouteRequest) (abi.RouteDecision, policy.Result) {
	switch {
	case r.Purpose == abi.PurposeAssessment:
		return abi.RouteDecision{Tier: abi.TierPremium, Score: 0.9}, policy.Result{}
	case len(r.Message) < 40:
		return abi.RouteDecision{Tier: abi.TierEconomy, Score: 0.1}, policy.Result{}
	}
	return abi.RouteDecision{Tier: abi.TierStandard, Score: 0.5}, policy.Result{}
}

func (lengthRouter) Compress(_ context.Context, r *abi.CompressRequest) (abi.CompressDecision, policy.Result) {
	return policy.FallbackCompress(r), policy.Result{}
}

func newChatFixture(t testing.TB, dec policy.Decider, st store.Store, users int) *chatFixture {
	t.Helper()
	return newChatFixtureWith(t, dec, st, users, nil)
}

// newChatFixtureWith serves every tier with p (nil: the simulated
// provider).
func newChatFixtureWith(t testing.TB, dec policy.Decider, st store.Store, users int, p llm.Provider) *chatFixture {
	t.Helper()
	if st == nil {
		st = memstore.New()
	}
	ctx := context.Background()
	a, err := auth.New(auth.RandomSecret())
	if err != nil {
		t.Fatal(err)
	}
	f := &chatFixture{tokens: map[int64]string{}, sim: simulated.New(simulated.Options{}), st: st}
	for id := int64(1); id <= int64(users); id++ {
		if _, err := st.CreateUser(ctx, store.User{ID: id, Name: fmt.Sprint("user", id)}); err != nil {
			t.Fatal(err)
		}
		if f.tokens[id], err = a.Issue(id, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if p == nil {
		p = f.sim
	}
	f.svc, err = chat.New(chat.Config{Store: st, Decider: dec, Tiers: llm.DefaultTiers(p.Name()),
		Providers: map[string]llm.Provider{p.Name(): p}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(DefaultConfig(), Deps{Auth: a, Chat: f.svc})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	f.url = "http://" + ln.Addr().String()
	return f
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (r httpResult) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends a request as user (0: no token) with extra headers.
func (f *chatFixture) do(t testing.TB, method, path string, user int64, body string, hdr ...string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != 0 {
		req.Header.Set("Authorization", "Bearer "+f.tokens[user])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{res.StatusCode, res.Header, b}
}

func (f *chatFixture) newSession(t testing.TB, user int64) string {
	t.Helper()
	r := f.do(t, "POST", "/api/chat/sessions", user, `{"title":"practice"}`)
	if r.status != 201 {
		t.Fatalf("create session: %d %s", r.status, r.body)
	}
	return r.json(t)["id"].(string)
}

func errCode(t testing.TB, r httpResult) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.body)
	}
	if c, ok := e["code"].(string); ok {
		return c
	}
	return ""
}

func TestChatSessionEndpoints(t *testing.T) {
	f := newChatFixture(t, lengthRouter{}, nil, 2)
	sid := f.newSession(t, 1)

	r := f.do(t, "POST", "/api/chat/sessions/"+sid+"/messages", 1, `{"text":"hi coach!"}`)
	if r.status != 200 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	var reply chat.Reply
	if err := json.Unmarshal(r.body, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Assistant.Tier != "economy" || reply.User.Text != "hi coach!" || !reply.Simulated || reply.Assistant.CostUSD <= 0 {
		t.Errorf("reply = %+v", reply)
	}
	r = f.do(t, "POST", "/api/chat/sessions/"+sid+"/messages", 1, `{"text":"Please assess my last three conversations.","purpose":"assessment"}`)
	if r.status != 200 || !strings.Contains(string(r.body), `"tier":"premium"`) {
		t.Errorf("assessment: %d %s", r.status, r.body)
	}

	r = f.do(t, "GET", "/api/chat/sessions/"+sid+"/messages?limit=3", 1, "")
	m := r.json(t)
	if r.status != 200 || len(m["messages"].([]any)) != 3 || m["next_after"].(float64) == 0 {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	r = f.do(t, "GET", "/api/chat/sessions/"+sid+"/messages?after="+fmt.Sprint(m["next_after"]), 1, "")
	if r.status != 200 || len(r.json(t)["messages"].([]any)) != 1 {
		t.Errorf("list page 2: %d %s", r.status, r.body)
	}

	r = f.do(t, "GET", "/api/chat/sessions/"+sid+"/cost", 1, "")
	var rep chat.CostReport
	json.Unmarshal(r.body, &rep)
	if r.status != 200 || rep.Turns != 2 || rep.Tiers["economy"] != 1 || rep.Tiers["premium"] != 1 || rep.CostUSD <= 0 || rep.BaselineCostUSD < rep.CostUSD {
		t.Errorf("cost: %d %s", r.status, r.body)
	}

	// The caller's own sessions, newest first; none of another user's.
	second := f.newSession(t, 1)
	r = f.do(t, "GET", "/api/chat/sessions", 1, "")
	var list struct{ Items []store.ChatSession }
	if err := json.Unmarshal(r.body, &list); r.status != 200 || err != nil || len(list.Items) != 2 ||
		!slices.ContainsFunc(list.Items, func(x store.ChatSession) bool { return x.ID == sid }) ||
		!slices.ContainsFunc(list.Items, func(x store.ChatSession) bool { return x.ID == second }) {
		t.Errorf("sessions: %d %s", r.status, r.body)
	}
	if r = f.do(t, "GET", "/api/chat/sessions?limit=1", 1, ""); r.status != 200 || len(r.json(t)["items"].([]any)) != 1 {
		t.Errorf("sessions?limit=1: %d %s", r.status, r.body)
	}
	if r = f.do(t, "GET", "/api/chat/sessions", 2, ""); r.status != 200 || len(r.json(t)["items"].([]any)) != 0 {
		t.Errorf("another user's sessions: %d %s", r.status, r.body)
	}

	tests := []struct {
		name, method, path string
		user               int64
		body               string
		status             int
		code               string
	}{
		{"no token", "POST", "/api/chat/sessions", 0, `{}`, 401, "unauthorized"},
		{"no token list", "GET", "/api/chat/sessions", 0, "", 401, "unauthorized"},
		{"bad list limit", "GET", "/api/chat/sessions?limit=0", 1, "", 400, "invalid_limit"},
		{"no token messages", "GET", "/api/chat/sessions/" + sid + "/messages", 0, "", 401, "unauthorized"},
		{"other user's messages", "GET", "/api/chat/sessions/" + sid + "/messages", 2, "", 403, "forbidden"},
		{"other user's send", "POST", "/api/chat/sessions/" + sid + "/messages", 2, `{"text":"hi"}`, 403, "forbidden"},
		{"other user's cost", "GET", "/api/chat/sessions/" + sid + "/cost", 2, "", 403, "forbidden"},
		{"unknown session", "GET", "/api/chat/sessions/nope/messages", 1, "", 404, "not_found"},
		{"bad json", "POST", "/api/chat/sessions/" + sid + "/messages", 1, `{"text":`, 400, "invalid_body"},
		{"missing text", "POST", "/api/chat/sessions/" + sid + "/messages", 1, `{"purpose":"chat"}`, 400, "invalid_text"},
		{"blank text", "POST", "/api/chat/sessions/" + sid + "/messages", 1, `{"text":"   "}`, 400, "invalid_text"},
		{"bad purpose", "POST", "/api/chat/sessions/" + sid + "/messages", 1, `{"text":"x","purpose":"gossip"}`, 400, "invalid_purpose"},
		{"bad limit", "GET", "/api/chat/sessions/" + sid + "/messages?limit=5000", 1, "", 400, "invalid_limit"},
		{"bad after", "GET", "/api/chat/sessions/" + sid + "/messages?after=x", 1, "", 400, "invalid_after"},
		{"long title", "POST", "/api/chat/sessions", 1, `{"title":"` + strings.Repeat("x", 300) + `"}`, 400, "invalid_title"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(t, tt.method, tt.path, tt.user, tt.body)
			if r.status != tt.status || errCode(t, r) != tt.code {
				t.Errorf("%d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
		})
	}
}

// readEvents decodes an SSE body.
func readEvents(t testing.TB, body []byte) []sse.Event {
	t.Helper()
	d := sse.NewDecoder(bytes.NewReader(body))
	var out []sse.Event
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("SSE body %q: %v", body, err)
		}
		out = append(out, ev)
	}
}

func TestChatStreaming(t *testing.T) {
	f := newChatFixture(t, lengthRouter{}, nil, 1)
	sid := f.newSession(t, 1)
	r := f.do(t, "POST", "/api/chat/sessions/"+sid+"/messages", 1, `{"text":"How can I get better at small talk with coworkers?"}`, "Accept", "text/event-stream")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
	evs := readEvents(t, r.body)
	var text strings.Builder
	for _, ev := range evs[:len(evs)-1] {
		if ev.Event != "delta" {
			t.Fatalf("event %q before done", ev.Event)
		}
		var d struct{ Text string }
		json.Unmarshal([]byte(ev.Data), &d)
		text.WriteString(d.Text)
	}
	last := evs[len(evs)-1]
	var reply chat.Reply
	if last.Event != "done" || json.Unmarshal([]byte(last.Data), &reply) != nil {
		t.Fatalf("last event %+v", last)
	}
	if len(evs) < 5 || reply.Assistant.Text != text.String() || reply.Assistant.Tier != "standard" || reply.Assistant.ID == 0 {
		t.Errorf("%d events, streamed %q, reply %+v", len(evs), text.String(), reply.Assistant)
	}
}

func TestChatFallbackAndEveryTierDown(t *testing.T) {
	f := newChatFixture(t, lengthRouter{}, nil, 1)
	sid := f.newSession(t, 1)

	f.sim.SetDown("claude-haiku-4-5", true)
	r := f.do(t, "POST", "/api/chat/sessions/"+sid+"/messages", 1, `{"text":"hello"}`)
	var reply chat.Reply
	json.Unmarshal(r.body, &reply)
	if r.status != 200 || reply.Route.Tier != "economy" || reply.Assistant.Tier != "standard" || len(reply.Fallbacks) != 1 {
		t.Fatalf("fallback: %d %s", r.status, r.body)
	}
	if st := f.svc.Stats(); st.Fallbacks != 1 {
		t.Errorf("fallbacks counted = %d", st.Fallbacks)
	}

	f.sim.SetDown("*", true)
	for _, accept := range []string{"application/json", "text/event-stream"} {
		text := "anyone there? via " + accept
		r = f.do(t, "POST", "/api/chat/sessions/"+sid+"/messages", 1, `{"text":"`+text+`"}`, "Accept", accept)
		if r.status != 503 || errCode(t, r) != "llm_unavailable" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: every tier down: %d %v %s", accept, r.status, r.header.Get("Content-Type"), r.body)
		}
		r = f.do(t, "GET", "/api/chat/sessions/"+sid+"/messages", 1, "")
		msgs := r.json(t)["messages"].([]any)
		last := msgs[len(msgs)-1].(map[string]any)
		if last["text"] != text || last["role"] != "user" {
			t.Errorf("%s: user message not stored; last = %v", accept, last)
		}
	}
	if st := f.svc.Stats(); st.Failed != 2 || st.Fallbacks != 1+2*3 {
		t.Errorf("stats = %+v", st)
	}
}

// breaking streams some text, then fails as a broken stream would.
type breaking struct{}

func (breaking) Name() string { return "breaking" }
func (breaking) Complete(_ context.Context, req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error) {
	if onDelta == nil {
		return nil, &llm.Error{Provider: "breaking", Kind: llm.KindUnavailable, Status: 502}
	}
	if err := onDelta("Let me think"); err != nil {
		return nil, err
	}
	return nil, &llm.Error{Provider: "breaking", Kind: llm.KindStream, Message: "stream ended before message_stop"}
}

func TestStreamBreaksMidAnswer(t *testing.T) {
	f := newChatFixtureWith(t, lengthRouter{}, nil, 1, breaking{})
	sid := f.newSession(t, 1)
	r := f.do(t, "POST", "/api/chat/sessions/"+sid+"/messages", 1, `{"text":"hello"}`, "Accept", "text/event-stream")
	evs := readEvents(t, r.body)
	if r.status != 200 || len(evs) != 2 || evs[0].Event != "delta" || evs[1].Event != "error" || !strings.Contains(evs[1].Data, `"llm_error"`) {
		t.Errorf("%d %s", r.status, r.body)
	}
	r = f.do(t, "POST", "/v1/chat/completions", 1, `{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	evs = readEvents(t, r.body)
	if r.status != 200 || len(evs) != 3 || !strings.Contains(evs[0].Data, "Let me think") || !strings.Contains(evs[1].Data, `"server_error"`) || evs[2].Data != "[DONE]" {
		t.Errorf("%d %s", r.status, r.body)
	}
	// The Messages API: the text, then an error event in Anthropic's
	// shape; no retry on another tier once text has gone out.
	r = f.do(t, "POST", "/v1/messages", 1, `{"model":"auto","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	evs = readEvents(t, r.body)
	var names []string
	for _, ev := range evs {
		names = append(names, ev.Event)
	}
	if r.status != 200 || strings.Join(names, " ") != "message_start content_block_start ping content_block_delta error" ||
		!strings.Contains(evs[3].Data, "Let me think") || !strings.Contains(evs[4].Data, `"type":"error"`) || !strings.Contains(evs[4].Data, `"api_error"`) {
		t.Errorf("messages: %d %s", r.status, r.body)
	}
	// Not streamed: every tier fails before any text, 503.
	r = f.do(t, "POST", "/api/chat/sessions/"+sid+"/messages", 1, `{"text":"hello again"}`)
	if r.status != 503 || errCode(t, r) != "llm_unavailable" {
		t.Errorf("%d %s", r.status, r.body)
	}
}

func TestClientLeavesMidStreamAnswerStillStored(t *testing.T) {
	slow := simulated.New(simulated.Options{PerToken: 5 * time.Millisecond})
	f := newChatFixtureWith(t, lengthRouter{}, nil, 1, slow)
	sid := f.newSession(t, 1)
	req, _ := http.NewRequest("POST", f.url+"/api/chat/sessions/"+sid+"/messages", strings.NewReader(`{"text":"hello there"}`))
	req.Header.Set("Authorization", "Bearer "+f.tokens[1])
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := sse.NewDecoder(res.Body).Next()
	if err != nil || ev.Event != "delta" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	res.Body.Close() // the client leaves
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs, err := f.svc.Messages(context.Background(), 1, sid, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 2 && msgs[1].Role == "assistant" && strings.HasPrefix(msgs[1].Text, "[simulated") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("answer not stored after the client left: %+v", msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func FuzzParseSendBody(f *testing.F) {
	for _, s := range []string{`{"text":"hi"}`, `{"text":"x","purpose":"assessment"}`, `{"purpose":"chat"}`, `{"text":null}`, `[]`, `{"text":`, `"text"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		in, err := parseSendBody([]byte(body))
		if err != nil {
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("error %v is not a 400", err)
			}
			return
		}
		if !json.Valid([]byte(body)) {
			t.Fatalf("accepted invalid JSON %q as %+v", body, in)
		}
	})
}
