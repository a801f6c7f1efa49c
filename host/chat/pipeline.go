package chat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/sdk/abi"
)

// RouteInfo tells how the answering tier was chosen.
type RouteInfo struct {
	Tier    string  `json:"tier"`
	Score   float64 `json:"score"`
	Reason  string  `json:"reason"`
	Policy  string  `json:"policy,omitempty"`
	Version string  `json:"version,omitempty"`
	Outcome string  `json:"outcome"`
}

// CompressInfo tells what of the history went into the context.
type CompressInfo struct {
	HistoryMessages int `json:"history_messages"`
	HistoryTokens   int `json:"history_tokens"`
	Kept            int `json:"kept"`
	KeptTokens      int `json:"kept_tokens"`
	BudgetTokens    int `json:"budget_tokens"`
	SummaryTokens   int `json:"summary_tokens"`
	// Summary says where the summary came from: "", "policy" (the
	// compress policy's extractive summary), "model" (written now by the
	// economy model) or "stored" (reused from an earlier turn).
	Summary string `json:"summary,omitempty"`
	// Skipped is true when the whole history fit the budget and no
	// policy was asked.
	Skipped bool   `json:"skipped"`
	Policy  string `json:"policy,omitempty"`
	Version string `json:"version,omitempty"`
	Outcome string `json:"outcome,omitempty"`
}

// Fallback records a tier that failed before another answered.
type Fallback struct {
	Tier  string `json:"tier"`
	Model string `json:"model"`
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// Input is one user message.
type Input struct {
	Text string
	// Purpose is "chat" (default) or "assessment".
	Purpose string
}

// Reply is the outcome of Send.
type Reply struct {
	User      store.ChatMessage `json:"message"`
	Assistant store.ChatMessage `json:"reply"`
	Route     RouteInfo         `json:"route"`
	Compress  CompressInfo      `json:"compress"`
	Fallbacks []Fallback        `json:"fallbacks"`
	Simulated bool              `json:"simulated"`
}

// histMsg is one history message as the pipeline sees it.
type histMsg struct {
	storeID int64 // 0 for gateway history
	role    string
	text    string
	tokens  int // text tokens plus framing
}

// turn is the pipeline's input, wherever the history comes from.
type turn struct {
	endpoint    string
	system      string
	history     []histMsg
	query       string
	queryTokens int
	purpose     abi.Purpose
	user        string
	sessionID   string // "" for the gateway: no stored summary
	maxTokens   int
	temperature *float64
	params      llm.Params
	// verbatim, when set, is the whole conversation sent as is: no
	// compression (a conversation with tool calls).
	verbatim   []llm.Message
	forcedTier string // skip routing
	noFallback bool
	onDelta    llm.DeltaFunc
	onAttempt  func(tier, model string)
	timing     *Timing // nil: not measured
}

// outcome is the pipeline's result.
type outcome struct {
	resp                  *llm.Response
	tier                  *llm.Tier
	provider              string
	route                 RouteInfo
	compress              CompressInfo
	fallbacks             []Fallback
	costUSD               float64
	baselineCostUSD       float64
	contextTokens         int
	baselineContextTokens int
	latency               time.Duration
}

// fallbackOrder lists the tiers tried for a message routed to first:
// the routed tier, then the nearest other tiers, preferring a stronger one.
func fallbackOrder(first string) []string {
	switch first {
	case llm.TierEconomy:
		return []string{llm.TierEconomy, llm.TierStandard, llm.TierPremium}
	case llm.TierPremium:
		return []string{llm.TierPremium, llm.TierStandard, llm.TierEconomy}
	}
	return []string{llm.TierStandard, llm.TierPremium, llm.TierEconomy}
}

func parsePurpose(p string) (abi.Purpose, error) {
	switch p {
	case "", "chat":
		return abi.PurposeChat, nil
	case "assessment":
		return abi.PurposeAssessment, nil
	}
	return 0, &InputError{"purpose", `must be "chat" or "assessment"`}
}

func validText(text string) (string, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return "", &InputError{"text", "must not be empty"}
	}
	if len(text) > MaxMessageChars {
		return "", &InputError{"text", fmt.Sprintf("at most %d characters", MaxMessageChars)}
	}
	return text, nil
}

// Send runs the pipeline for one user message of userID's session. The
// user's message is stored before any model is called, so it is kept even
// when every tier fails (ErrAllTiersDown). With onDelta non-nil the answer
// is streamed to it.
func (s *Service) Send(ctx context.Context, userID int64, sessionID string, in Input, onDelta llm.DeltaFunc) (*Reply, error) {
	text, err := validText(in.Text)
	if err != nil {
		return nil, err
	}
	purpose, err := parsePurpose(in.Purpose)
	if err != nil {
		return nil, err
	}
	if _, err := s.Session(ctx, userID, sessionID); err != nil {
		return nil, err
	}
	hist, err := s.history(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	um := store.ChatMessage{SessionID: sessionID, Role: store.RoleUser, Text: text, Tokens: llm.CountTokens(text), Status: StatusOK}
	if err := s.st.AppendChatMessage(ctx, &um); err != nil {
		return nil, fmt.Errorf("chat: store message: %w", err)
	}
	t := &turn{endpoint: "chat", system: s.cfg.SystemPrompt, query: text, queryTokens: um.Tokens + llm.MessageOverheadTokens,
		purpose: purpose, user: s.upstreamUser(itoa(userID)), sessionID: sessionID, onDelta: onDelta}
	t.history = make([]histMsg, 0, len(hist))
	for _, m := range hist {
		t.history = append(t.history, histMsg{storeID: m.ID, role: m.Role, text: m.Text, tokens: m.Tokens + llm.MessageOverheadTokens})
	}
	out, err := s.run(ctx, t)
	if err != nil {
		return &Reply{User: um}, err
	}
	am := store.ChatMessage{
		SessionID: sessionID, Role: store.RoleAssistant, Text: out.resp.Text, Tokens: llm.CountTokens(out.resp.Text),
		Tier: out.tier.Name, Provider: out.provider, Model: out.resp.Model,
		InputTokens: out.resp.Usage.InputTokens, OutputTokens: out.resp.Usage.OutputTokens,
		CacheReadTokens: out.resp.Usage.CacheReadTokens, CacheWriteTokens: out.resp.Usage.CacheWriteTokens,
		CostUSD: out.costUSD, BaselineCostUSD: out.baselineCostUSD,
		ContextTokens: out.contextTokens, BaselineContextTokens: out.baselineContextTokens,
		LatencyMS: int(out.latency.Milliseconds()), Status: StatusOK,
	}
	if am.Model == "" {
		am.Model = out.tier.Model
	}
	if err := s.st.AppendChatMessage(ctx, &am); err != nil {
		return &Reply{User: um}, fmt.Errorf("chat: store answer: %w", err)
	}
	return &Reply{User: um, Assistant: am, Route: out.route, Compress: out.compress, Fallbacks: out.fallbacks, Simulated: out.resp.Simulated}, nil
}

// run routes, compresses, summarises, calls with fallback and prices one
// turn, and reports it to the observer.
func (s *Service) run(ctx context.Context, t *turn) (*outcome, error) {
	out := &outcome{fallbacks: []Fallback{}}
	histTokens := 0
	for _, m := range t.history {
		histTokens += m.tokens
	}
	out.compress.HistoryMessages, out.compress.HistoryTokens = len(t.history), histTokens

	// Route: the decision needs only the new message and the history's
	// size, so it comes first and its tier sets the compress budget.
	routed := t.forcedTier
	if routed == "" {
		rs := time.Now()
		rd, res := s.dec.Route(ctx, &abi.RouteRequest{Message: t.query, Purpose: t.purpose,
			HistoryTurns: uint32(len(t.history)), HistoryTokens: uint32(histTokens)})
		if t.timing != nil {
			t.timing.Route = time.Since(rs)
		}
		name := rd.Tier.String()
		if _, ok := abi.ParseTier(name); !ok {
			name = s.cfg.DefaultTier
		}
		routed = name
		out.route = RouteInfo{Tier: name, Score: rd.Score, Reason: rd.Reason, Policy: res.Policy, Version: res.Version, Outcome: res.Outcome.String()}
	} else {
		out.route = RouteInfo{Tier: routed, Reason: "requested", Outcome: "none"}
	}
	tier, _ := s.tiers.Get(routed)

	var kept []histMsg
	var summary string
	var summaryCost float64
	if t.verbatim == nil {
		cs := time.Now()
		kept, summary, summaryCost = s.compress(ctx, t, tier.ContextBudgetTokens, &out.compress)
		if t.timing != nil {
			t.timing.Compress = time.Since(cs)
		}
	} else {
		out.compress.BudgetTokens, out.compress.Skipped = tier.ContextBudgetTokens, true
		out.compress.Kept, out.compress.KeptTokens = len(t.history), histTokens
	}

	system := t.system
	if summary != "" {
		if system != "" {
			system += "\n\n"
		}
		system += "Summary of the earlier conversation:\n" + summary
	}
	msgs := make([]llm.Message, 0, len(kept)+1)
	keptTokens := 0
	for _, m := range kept {
		msgs = append(msgs, llm.Message{Role: m.role, Content: m.text})
		keptTokens += m.tokens
	}
	msgs = append(msgs, llm.Message{Role: llm.RoleUser, Content: t.query})
	if t.verbatim != nil {
		msgs = t.verbatim
		keptTokens = llm.CountMessages("", msgs) - t.queryTokens
		histTokens = keptTokens
	}
	sysTokens := 0
	if system != "" {
		sysTokens = llm.CountTokens(system) + llm.MessageOverheadTokens
	}
	baseSys := 0
	if t.system != "" {
		baseSys = llm.CountTokens(t.system) + llm.MessageOverheadTokens
	}
	out.contextTokens = sysTokens + keptTokens + t.queryTokens
	out.baselineContextTokens = baseSys + histTokens + t.queryTokens

	order := fallbackOrder(routed)
	if t.noFallback {
		order = order[:1]
	}
	resp, answered, err := s.callWithFallback(ctx, t, order, system, msgs, out)
	ev := TurnEvent{Endpoint: t.endpoint, RoutedTier: routed, Fallbacks: len(out.fallbacks),
		ContextTokens: out.contextTokens, BaselineContextTokens: out.baselineContextTokens, Latency: out.latency}
	if err != nil {
		ev.Failed = true
		s.recordTurn(ev)
		if pe, ok := err.(*PartialError); ok {
			pe.CostUSD += summaryCost
		}
		return nil, err
	}
	out.resp, out.tier, out.provider = resp, answered, answered.Provider
	now := s.now()
	out.costUSD = answered.PriceAt(now).Cost(resp.Usage) + summaryCost
	premium, _ := s.tiers.Get(llm.TierPremium)
	base := resp.Usage
	if saved := out.baselineContextTokens - out.contextTokens; saved > 0 {
		base.InputTokens += saved
	}
	out.baselineCostUSD = premium.PriceAt(now).Cost(base)
	ev.Tier, ev.Model, ev.Simulated = answered.Name, resp.Model, resp.Simulated
	ev.CostUSD, ev.BaselineCostUSD = out.costUSD, out.baselineCostUSD
	s.recordTurn(ev)
	return out, nil
}

// callWithFallback asks each tier of order in turn until one answers. A
// streamed answer that already reached the caller is not restarted on
// another tier.
func (s *Service) callWithFallback(ctx context.Context, t *turn, order []string, system string, msgs []llm.Message, out *outcome) (*llm.Response, *llm.Tier, error) {
	emitted := false
	var sent strings.Builder // what reached the caller, billed if the stream breaks
	start := time.Now()
	first := firstToken(start, t.timing, t.onDelta)
	var delta llm.DeltaFunc
	if t.onDelta != nil {
		delta = func(d string) error {
			emitted = true
			sent.WriteString(d)
			return first.delta(d)
		}
	}
	var lastErr error
	for i, name := range order {
		tier, _ := s.tiers.Get(name)
		p := s.providers[tier.Provider]
		req := &llm.Request{Model: tier.Model, System: system, Messages: msgs, MaxTokens: tier.MaxOutputTokens,
			Temperature: t.temperature, User: t.user, Params: t.params}
		if t.maxTokens > 0 && t.maxTokens < req.MaxTokens {
			req.MaxTokens = t.maxTokens
		}
		if t.onAttempt != nil {
			t.onAttempt(name, tier.Model)
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		cs := time.Now()
		resp, err := p.Complete(cctx, req, delta)
		cancel()
		ev := CallEvent{Purpose: PurposeAnswer, Tier: name, Provider: p.Name(), Model: tier.Model, Latency: time.Since(cs), Err: err}
		if err == nil {
			first.done(time.Since(start), &ev)
			ev.FirstToken -= cs.Sub(start) // this call's own, not the fallbacks' before it
			first.chunked(&ev)
			ev.Usage = resp.Usage
			ev.CostUSD = tier.PriceAt(s.now()).Cost(resp.Usage)
			if resp.Model != "" {
				ev.Model = resp.Model
			}
			s.recordCall(ev)
			out.latency = time.Since(start)
			return resp, tier, nil
		}
		s.recordCall(ev)
		lastErr = err
		if emitted {
			// Part of the answer reached the caller: no other tier may
			// restart it, and what was sent and received is billed.
			out.latency = time.Since(start)
			u := llm.Usage{InputTokens: out.contextTokens, OutputTokens: llm.CountTokens(sent.String())}
			return nil, nil, &PartialError{Err: fmt.Errorf("chat: %s tier: %w", name, err), Tier: name, Model: tier.Model,
				Usage: u, CostUSD: tier.PriceAt(s.now()).Cost(u)}
		}
		if ctx.Err() != nil {
			out.latency = time.Since(start)
			return nil, nil, fmt.Errorf("chat: %s tier: %w", name, err)
		}
		e := llm.AsError(p.Name(), err)
		out.fallbacks = append(out.fallbacks, Fallback{Tier: name, Model: tier.Model, Error: e.Error(), Kind: e.Kind.String()})
		if i+1 < len(order) {
			s.log.Warn("model tier failed, falling back", "tier", name, "model", tier.Model, "next", order[i+1], "err", err)
		}
	}
	out.latency = time.Since(start)
	s.log.Error("every model tier failed", "tiers", order, "err", lastErr)
	return nil, nil, fmt.Errorf("%w: %w", ErrAllTiersDown, lastErr)
}

// firstTokenClock times a call's first token for Timing and the call's
// event.
type firstTokenClock struct {
	start  time.Time
	timing *Timing
	at     time.Duration // from start to the first token; 0 before it
	delta  llm.DeltaFunc // onDelta with the first token timed; nil when onDelta is
	// streamed is set by the first delta: the first token came as a chunk.
	streamed bool
}

// firstToken returns the clock for calls starting at start whose deltas
// go to onDelta.
func firstToken(start time.Time, timing *Timing, onDelta llm.DeltaFunc) *firstTokenClock {
	c := &firstTokenClock{start: start, timing: timing}
	if onDelta != nil {
		c.delta = func(d string) error {
			if c.at == 0 {
				c.at, c.streamed = max(time.Since(c.start), 1), true
				if c.timing != nil {
					c.timing.FirstToken = c.at
				}
			}
			return onDelta(d)
		}
	}
	return c
}

// done records the answer's end, total after start: a call that streamed
// nothing (or was not streamed) had its first token with the whole
// answer. It sets ev's FirstToken from start.
func (c *firstTokenClock) done(total time.Duration, ev *CallEvent) {
	if c.at == 0 {
		c.at = total
		if c.timing != nil {
			c.timing.FirstToken = c.at
		}
	}
	if c.timing != nil {
		// A streaming caller has read Route, Compress and FirstToken
		// (written before the first delta); Provider it reads only once
		// the call has returned.
		c.timing.Provider = total
	}
	if ev.Err == nil {
		ev.FirstToken = c.at
	}
}

// chunked sets ev's FirstChunk from its FirstToken when the answer was
// streamed.
func (c *firstTokenClock) chunked(ev *CallEvent) {
	if c.streamed && ev.Err == nil {
		ev.FirstChunk = ev.FirstToken
	}
}

// compress picks what of the history goes into the context and the
// summary of the rest. It fills info and returns the kept messages, the
// summary text and what writing the summary cost.
func (s *Service) compress(ctx context.Context, t *turn, budget int, info *CompressInfo) ([]histMsg, string, float64) {
	info.BudgetTokens = budget
	if info.HistoryTokens <= budget {
		info.Skipped, info.Kept, info.KeptTokens = true, len(t.history), info.HistoryTokens
		return t.history, "", 0
	}
	req := &abi.CompressRequest{Query: t.query, BudgetTokens: uint32(budget), Messages: make([]abi.Message, len(t.history))}
	for i, m := range t.history {
		id := itoa(m.storeID)
		if m.storeID == 0 {
			id = itoa(int64(i))
		}
		req.Messages[i] = abi.Message{ID: id, Role: roleToABI(m.role), Text: m.text, Tokens: uint32(m.tokens)}
	}
	cd, res := s.dec.Compress(ctx, req)
	info.Policy, info.Version, info.Outcome = res.Policy, res.Version, res.Outcome.String()
	if !validKeep(cd.Keep, t.history, budget) {
		// The host never trusts a policy: an impossible answer gets the
		// fail-open decision.
		s.log.Warn("compress decision rejected", "policy", res.Policy, "version", res.Version)
		cd = decision.FallbackCompress(req)
		info.Outcome = decision.OutcomeFallback.String()
	}
	kept := make([]histMsg, 0, len(cd.Keep))
	keptIdx := make([]bool, len(t.history))
	for _, i := range cd.Keep {
		kept = append(kept, t.history[i])
		keptIdx[i] = true
		info.KeptTokens += t.history[i].tokens
	}
	info.Kept = len(kept)
	if len(kept) == len(t.history) {
		return kept, "", 0
	}
	room := budget - info.KeptTokens
	summary, source, cost := cd.Summary, "policy", 0.0
	if t.sessionID != "" {
		summary, source, cost = s.sessionSummary(ctx, t, keptIdx, room, cd.Summary)
	}
	if summary != "" {
		info.Summary = source
		info.SummaryTokens = llm.CountTokens(summary)
	}
	return kept, summary, cost
}

func validKeep(keep []uint32, hist []histMsg, budget int) bool {
	total := 0
	for j, i := range keep {
		if int(i) >= len(hist) || (j > 0 && i <= keep[j-1]) {
			return false
		}
		total += hist[i].tokens
	}
	return total <= budget
}

// sessionSummary returns the summary of what the context leaves out of a
// stored session. The session keeps one summary, covering messages up to
// a watermark; it is reused until the messages dropped past the watermark
// grow beyond SummaryRefreshTokens, then rewritten (by the economy model,
// or taken from the compress policy when summaries are extractive).
func (s *Service) sessionSummary(ctx context.Context, t *turn, kept []bool, room int, policySummary string) (string, string, float64) {
	stored, err := s.st.GetChatSummary(ctx, t.sessionID)
	have := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("chat summary unavailable", "session", t.sessionID, "err", err)
	}
	var dropped []histMsg
	var newTokens int
	var upTo int64
	for i, m := range t.history {
		if kept[i] {
			continue
		}
		dropped = append(dropped, m)
		upTo = max(upTo, m.storeID)
		if !have || m.storeID > stored.UpToMessageID {
			newTokens += m.tokens
		}
	}
	if have && stored.Text != "" && stored.Tokens <= room && newTokens < s.cfg.SummaryRefreshTokens {
		s.countSummary(true)
		return stored.Text, "stored", 0
	}
	text, source, cost := policySummary, "policy", 0.0
	if !s.extractive && room >= 40 {
		prev := ""
		fresh := dropped
		if have {
			prev = stored.Text
			fresh = fresh[:0:0]
			for _, m := range dropped {
				if m.storeID > stored.UpToMessageID {
					fresh = append(fresh, m)
				}
			}
		}
		sum, c, err := s.summarize(ctx, prev, fresh, policySummary, min(s.cfg.SummaryMaxTokens, room))
		cost = c
		if err == nil && sum != "" && llm.CountTokens(sum) <= room {
			text, source = sum, "model"
		}
	}
	if text == "" {
		return "", "", cost
	}
	if err := s.st.PutChatSummary(ctx, store.ChatSummary{SessionID: t.sessionID, UpToMessageID: upTo, Text: text, Tokens: llm.CountTokens(text)}); err != nil {
		s.log.Warn("chat summary not stored", "session", t.sessionID, "err", err)
	}
	s.countSummary(false)
	return text, source, cost
}

const summaryPrompt = "You keep a running summary of a coaching conversation between a user and their coach. " +
	"Merge the new messages into the current summary. Keep names, dates, numbers, goals, fears, commitments " +
	"and progress; drop pleasantries. Reply with the updated summary only, in plain sentences."

// summarize asks the economy tier to fold fresh messages into prev. The
// most recent messages that fit SummaryInputTokens are sent; older ones
// are represented by the policy's extractive notes.
func (s *Service) summarize(ctx context.Context, prev string, fresh []histMsg, notes string, maxTokens int) (string, float64, error) {
	tier, _ := s.tiers.Get(llm.TierEconomy)
	p := s.providers[tier.Provider]
	start := len(fresh)
	used := 0
	for start > 0 && used+fresh[start-1].tokens <= s.cfg.SummaryInputTokens {
		start--
		used += fresh[start].tokens
	}
	var b strings.Builder
	if prev != "" {
		b.WriteString("Current summary:\n")
		b.WriteString(prev)
		b.WriteString("\n\n")
	}
	if start > 0 && notes != "" {
		b.WriteString("Notes on older messages:\n")
		b.WriteString(notes)
		b.WriteString("\n\n")
	}
	b.WriteString("New messages:\n")
	for _, m := range fresh[start:] {
		b.WriteString(m.role)
		b.WriteString(": ")
		b.WriteString(m.text)
		b.WriteByte('\n')
	}
	req := &llm.Request{Model: tier.Model, System: summaryPrompt, MaxTokens: maxTokens,
		Messages: []llm.Message{{Role: llm.RoleUser, Content: b.String()}}}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	cs := time.Now()
	resp, err := p.Complete(cctx, req, nil)
	ev := CallEvent{Purpose: PurposeSummary, Tier: tier.Name, Provider: p.Name(), Model: tier.Model, Latency: time.Since(cs), Err: err}
	if err != nil {
		s.recordCall(ev)
		s.log.Warn("summary failed, using the policy's extractive summary", "err", err)
		return "", 0, err
	}
	ev.Usage = resp.Usage
	ev.CostUSD = tier.PriceAt(s.now()).Cost(resp.Usage)
	s.recordCall(ev)
	return strings.TrimSpace(resp.Text), ev.CostUSD, nil
}
