// Package chat runs the AI coach's conversations: for each user message it
// loads the session's history, asks the route policy which tier answers
// and the compress policy what of the history goes verbatim into the
// context within that tier's budget, summarises what was left out (kept
// per session so it is not recomputed every turn), calls the tier's
// provider (falling back to another tier when it fails), stores the answer
// with its usage, and keeps a cost ledger against a baseline: the same
// conversation sent uncompressed to the premium tier.
//
// The same pipeline, without a stored session, serves the OpenAI-compatible
// gateway (Complete).
package chat

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Store is what the chat needs of the persistence layer; store.Store
// satisfies it.
type Store interface {
	CreateChatSession(ctx context.Context, userID int64, title string) (store.ChatSession, error)
	GetChatSession(ctx context.Context, id string) (store.ChatSession, error)
	ListChatSessions(ctx context.Context, userID int64, limit int) ([]store.ChatSession, error)
	AppendChatMessage(ctx context.Context, m *store.ChatMessage) error
	ListChatMessages(ctx context.Context, sessionID string, afterID int64, limit int) ([]store.ChatMessage, error)
	GetChatSummary(ctx context.Context, sessionID string) (store.ChatSummary, error)
	PutChatSummary(ctx context.Context, s store.ChatSummary) error
}

var _ Store = (store.Store)(nil)

// Errors callers branch on.
var (
	// ErrForbidden: the session belongs to another user.
	ErrForbidden = errors.New("chat: session belongs to another user")
	// ErrAllTiersDown: every tier's provider failed; the user's message
	// is stored, no answer is.
	ErrAllTiersDown = errors.New("chat: every model tier is unavailable")
)

// InputError is invalid input; Field names it.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string { return "chat: " + e.Field + ": " + e.Reason }

// Message statuses stored on assistant messages.
const (
	StatusOK = "ok"
)

// DefaultSystemPrompt is the coach persona sent with every chat message.
const DefaultSystemPrompt = "You are Wingman, a warm and practical social-confidence coach. " +
	"Help the user build confidence through small, concrete steps and the app's challenges. " +
	"Be encouraging, specific and brief."

// Limits on input.
const (
	// MaxMessageChars bounds one user message.
	MaxMessageChars = 16000
	// MaxTitleChars bounds a session title.
	MaxTitleChars = 200
)

// Config configures a Service.
type Config struct {
	Store Store
	// Decider makes the route and compress decisions. Nil: the fail-open
	// decisions (default tier, most recent messages within the budget).
	Decider decision.Decider
	// Tiers maps tiers to providers, models, prices and budgets.
	Tiers *llm.Tiers
	// Providers by name (as named in Tiers). Wrap them in llm.Retrying.
	Providers map[string]llm.Provider
	// DefaultProvider serves gateway requests for models that no tier
	// names; empty: the economy tier's provider.
	DefaultProvider string
	// PassThroughModels sends a gateway request for a model no tier
	// names to DefaultProvider verbatim; off (the default), such a
	// request is ErrModelNotFound.
	PassThroughModels bool
	// UpstreamUser maps the end user's id (the caller's user id, and the
	// gateway request's user after a colon) onto what a provider is
	// told in its user field; nil, or an empty result, tells it nothing.
	// HashUser gives a keyed hash, so that a provider can tell users
	// apart without learning who they are.
	UpstreamUser func(user string) string
	// DefaultTier answers when the route policy names no valid tier.
	DefaultTier string
	// SystemPrompt defaults to DefaultSystemPrompt.
	SystemPrompt string
	// ExtractiveSummaries makes the session summary the compress policy's
	// extractive one instead of the economy model's. Default (set by New)
	// when the economy tier's provider is simulated.
	ExtractiveSummaries *bool
	// SummaryMaxTokens caps a model-written summary (default 250).
	SummaryMaxTokens int
	// SummaryRefreshTokens: a stored summary is reused until the
	// messages dropped since it was written exceed this many tokens
	// (default 600).
	SummaryRefreshTokens int
	// SummaryInputTokens caps what is sent to the summariser at once
	// (default 8000).
	SummaryInputTokens int
	// CallTimeout bounds one provider call including its retries
	// (default 90 s).
	CallTimeout time.Duration
	Log         *slog.Logger
	Observer    Observer
	Now         func() time.Time
}

// Service is the chat pipeline. Safe for concurrent use.
type Service struct {
	cfg        Config
	st         Store
	dec        decision.Decider
	tiers      *llm.Tiers
	providers  map[string]llm.Provider
	log        *slog.Logger
	obs        Observer
	now        func() time.Time
	extractive bool

	mu    sync.Mutex
	stats Stats
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("chat: a store is required")
	}
	if cfg.Tiers == nil {
		return nil, errors.New("chat: tiers are required")
	}
	for _, t := range cfg.Tiers.List() {
		if cfg.Providers[t.Provider] == nil {
			return nil, fmt.Errorf("chat: tier %s: no provider %q", t.Name, t.Provider)
		}
	}
	if cfg.DefaultProvider == "" {
		eco, _ := cfg.Tiers.Get(llm.TierEconomy)
		cfg.DefaultProvider = eco.Provider
	}
	if cfg.Providers[cfg.DefaultProvider] == nil {
		return nil, fmt.Errorf("chat: no provider %q", cfg.DefaultProvider)
	}
	if cfg.DefaultTier == "" {
		cfg.DefaultTier = llm.TierStandard
	}
	if _, ok := cfg.Tiers.Get(cfg.DefaultTier); !ok {
		return nil, fmt.Errorf("chat: default tier %q unknown", cfg.DefaultTier)
	}
	if cfg.SystemPrompt == "" {
		cfg.SystemPrompt = DefaultSystemPrompt
	}
	if cfg.SummaryMaxTokens <= 0 {
		cfg.SummaryMaxTokens = 250
	}
	if cfg.SummaryRefreshTokens <= 0 {
		cfg.SummaryRefreshTokens = 600
	}
	if cfg.SummaryInputTokens <= 0 {
		cfg.SummaryInputTokens = 8000
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 90 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, st: cfg.Store, dec: cfg.Decider, tiers: cfg.Tiers, providers: cfg.Providers,
		log: cfg.Log, obs: cfg.Observer, now: cfg.Now}
	if s.dec == nil {
		t, ok := abi.ParseTier(cfg.DefaultTier)
		if !ok {
			t = abi.TierStandard
		}
		s.dec = decision.Fallback{Tier: t}
	}
	eco, _ := cfg.Tiers.Get(llm.TierEconomy)
	s.extractive = eco.Provider == "simulated"
	if cfg.ExtractiveSummaries != nil {
		s.extractive = *cfg.ExtractiveSummaries
	}
	s.stats.Tiers = map[string]TierStats{}
	for _, name := range cfg.Tiers.Providers() {
		if name == "simulated" {
			s.log.Warn("chat answers are simulated: no model is called", "provider", name)
		}
	}
	return s, nil
}

// CreateSession opens a session for userID.
func (s *Service) CreateSession(ctx context.Context, userID int64, title string) (store.ChatSession, error) {
	title = strings.TrimSpace(title)
	if len(title) > MaxTitleChars {
		return store.ChatSession{}, &InputError{"title", fmt.Sprintf("at most %d characters", MaxTitleChars)}
	}
	if title == "" {
		title = "Coaching session"
	}
	sess, err := s.st.CreateChatSession(ctx, userID, title)
	if err != nil {
		return sess, fmt.Errorf("chat: create session: %w", err)
	}
	return sess, nil
}

// Sessions returns up to limit of userID's sessions, newest first.
func (s *Service) Sessions(ctx context.Context, userID int64, limit int) ([]store.ChatSession, error) {
	out, err := s.st.ListChatSessions(ctx, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("chat: sessions: %w", err)
	}
	return out, nil
}

// Session returns a session of userID's: ErrForbidden when it is someone
// else's, store.ErrNotFound when there is none.
func (s *Service) Session(ctx context.Context, userID int64, id string) (store.ChatSession, error) {
	sess, err := s.st.GetChatSession(ctx, id)
	if err != nil {
		return sess, fmt.Errorf("chat: session %s: %w", id, err)
	}
	if sess.UserID != userID {
		return store.ChatSession{}, ErrForbidden
	}
	return sess, nil
}

// Messages returns up to limit messages of userID's session after afterID.
func (s *Service) Messages(ctx context.Context, userID int64, id string, afterID int64, limit int) ([]store.ChatMessage, error) {
	if _, err := s.Session(ctx, userID, id); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > store.MaxChatPage {
		limit = store.MaxChatPage
	}
	msgs, err := s.st.ListChatMessages(ctx, id, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("chat: messages: %w", err)
	}
	return msgs, nil
}

func (s *Service) history(ctx context.Context, id string) ([]store.ChatMessage, error) {
	var all []store.ChatMessage
	after := int64(0)
	for {
		page, err := s.st.ListChatMessages(ctx, id, after, store.MaxChatPage)
		if err != nil {
			return nil, fmt.Errorf("chat: history: %w", err)
		}
		all = append(all, page...)
		if len(page) < store.MaxChatPage {
			return all, nil
		}
		after = page[len(page)-1].ID
	}
}

func roleToABI(r string) abi.Role {
	switch r {
	case store.RoleAssistant:
		return abi.RoleAssistant
	case store.RoleSystem:
		return abi.RoleSystem
	}
	return abi.RoleUser
}

// HashUser returns an UpstreamUser that sends the user as "u-" and the
// first 32 hex digits (128 bits) of HMAC-SHA256(key, user): stable for a
// key, not reversible without it.
func HashUser(key []byte) func(string) string {
	key = bytes.Clone(key)
	return func(user string) string {
		if user == "" {
			return ""
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(user))
		return "u-" + hex.EncodeToString(m.Sum(nil))[:32]
	}
}

// upstreamUser is what a provider is told of user.
func (s *Service) upstreamUser(user string) string {
	if s.cfg.UpstreamUser == nil || user == "" {
		return ""
	}
	return s.cfg.UpstreamUser(user)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
