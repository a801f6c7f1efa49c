package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/maypok86/otter/v2"
)

// Config configures a Service.
type Config struct {
	Store   Store
	Limiter LimiterConfig
	// LookupTTL is how long an instance trusts what it read of a key
	// (limits, revocation) before reading it again: the longest a
	// revocation or a change takes to reach the other instances (the
	// instance that made it knows at once). Default 2 s.
	LookupTTL time.Duration
	// FlushEvery is the ledger writer's interval (default 50 ms); at most
	// FlushRows rows (default 500) go in one write.
	FlushEvery time.Duration
	FlushRows  int
	// MissBudget is how many store lookups a second secrets never seen
	// opening a key may cause (default 100, burst twice that); past it
	// they are refused with ErrBusy before the store is asked.
	MissBudget float64
	Logger     *slog.Logger
	Now        func() time.Time
}

// Service is the virtual keys of one instance: authentication with a
// short-lived cache, the limiter, the ledger writer, and the operator's
// operations. Close flushes the ledger.
type Service struct {
	cfg     Config
	store   Store
	limiter *Limiter
	lookups *otter.Cache[string, lookup]
	// known are the hashes that opened a key lately: their lookups are
	// never refused for want of budget. Others (guesses, floods of
	// random secrets) share MissBudget store lookups a second.
	known   *otter.Cache[string, struct{}]
	missMu  sync.Mutex
	missTok float64
	missAt  time.Time
	log     *slog.Logger

	mu      sync.Mutex
	pending []Usage
	flushMu sync.Mutex // one flush at a time, in order
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closed  bool
}

type lookup struct {
	key Key
	err error // ErrNotFound, cached too (bounded), so a flood of bad keys does not reach the store
}

// NewService starts a service (and its ledger writer).
func NewService(cfg Config) *Service {
	if cfg.LookupTTL <= 0 {
		cfg.LookupTTL = 2 * time.Second
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 50 * time.Millisecond
	}
	if cfg.FlushRows <= 0 {
		cfg.FlushRows = 500
	}
	if cfg.MissBudget <= 0 {
		cfg.MissBudget = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, store: cfg.Store, log: cfg.Logger,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	lc := cfg.Limiter
	if lc.Now == nil {
		lc.Now = cfg.Now
	}
	if lc.Spent == nil {
		lc.Spent = func(ctx context.Context, id string, from, to time.Time) (Micros, error) {
			sp, err := s.store.KeySpend(ctx, id, from, to)
			return sp.Cost, err
		}
	}
	if lc.Flush == nil {
		lc.Flush = s.Flush
	}
	s.limiter = NewLimiter(lc)
	ttl := cfg.LookupTTL
	s.lookups = otter.Must(&otter.Options[string, lookup]{
		MaximumSize:      10_000,
		ExpiryCalculator: otter.ExpiryWriting[string, lookup](ttl),
	})
	s.known = otter.Must(&otter.Options[string, struct{}]{
		MaximumSize:      100_000,
		ExpiryCalculator: otter.ExpiryAccessing[string, struct{}](time.Hour),
	})
	s.missTok = 2 * cfg.MissBudget
	go s.writer()
	return s
}

// ErrBusy: too many lookups of unknown secrets right now.
var ErrBusy = errors.New("keys: too many lookups of unknown keys")

// takeMiss reports whether a lookup of a hash not known to open a key
// may go to the store now.
func (s *Service) takeMiss(now time.Time) bool {
	s.missMu.Lock()
	defer s.missMu.Unlock()
	if !s.missAt.IsZero() {
		s.missTok = min(2*s.cfg.MissBudget, s.missTok+now.Sub(s.missAt).Seconds()*s.cfg.MissBudget)
	}
	s.missAt = now
	if s.missTok < 1 {
		return false
	}
	s.missTok--
	return true
}

// Limiter is the service's limiter.
func (s *Service) Limiter() *Limiter { return s.limiter }

// Authenticate returns the key whose secret is given: ErrNotFound for
// no such key (or a secret not shaped as one), ErrRevoked, ErrExpired,
// ErrUnavailable when the store cannot answer, ErrBusy when unknown
// secrets come faster than MissBudget.
func (s *Service) Authenticate(ctx context.Context, secret string) (*Key, error) {
	if !LooksLikeSecret(secret) || len(secret) > 128 {
		return nil, ErrNotFound
	}
	h := Hash(secret)
	ck := string(h)
	lk, ok := s.lookups.GetIfPresent(ck)
	if !ok {
		if _, known := s.known.GetIfPresent(ck); !known && !s.takeMiss(s.cfg.Now()) {
			return nil, ErrBusy
		}
		k, err := s.store.KeyBySecretHash(ctx, h, s.cfg.Now())
		switch {
		case err == nil:
		case errors.Is(err, ErrNotFound):
			err = ErrNotFound
		default:
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		lk = lookup{key: k, err: err}
		s.lookups.Set(ck, lk)
		if err == nil {
			s.known.Set(ck, struct{}{})
		}
	}
	if lk.err != nil {
		return nil, lk.err
	}
	if err := lk.key.Check(s.cfg.Now()); err != nil {
		return nil, err
	}
	k := lk.key
	return &k, nil
}

// forget drops every cached lookup: a change made here is seen here at
// once (the other instances see it within LookupTTL).
func (s *Service) forget() { s.lookups.InvalidateAll() }

// Created is a new key and its secret, which is shown only now.
type Created struct {
	Key    Key
	Secret string
}

// Create issues a key.
func (s *Service) Create(ctx context.Context, spec Spec) (Created, error) {
	if err := spec.Validate(); err != nil {
		return Created{}, err
	}
	if len(spec.Metadata) == 0 {
		spec.Metadata = []byte("{}")
	}
	secret, hash, hint := NewSecret()
	k := Key{ID: NewID(), Name: spec.Name, Hint: hint, Limits: spec.Limits, ExpiresAt: spec.ExpiresAt,
		Metadata: spec.Metadata, CreatedAt: s.cfg.Now().UTC().Truncate(time.Microsecond)}
	if err := s.store.CreateKey(ctx, k, hash); err != nil {
		return Created{}, err
	}
	return Created{Key: k, Secret: secret}, nil
}

// Get returns a key.
func (s *Service) Get(ctx context.Context, id string) (Key, error) { return s.store.GetKey(ctx, id) }

// List returns every key, oldest first.
func (s *Service) List(ctx context.Context) ([]Key, error) { return s.store.ListKeys(ctx) }

// Rotate gives the key a new secret; the old one keeps opening for grace
// (0: it stops at once).
func (s *Service) Rotate(ctx context.Context, id string, grace time.Duration) (Created, error) {
	if grace < 0 || grace > MaxRotateGrace {
		return Created{}, fmt.Errorf("%w: grace: 0 to %s", ErrInvalid, MaxRotateGrace)
	}
	secret, hash, hint := NewSecret()
	now := s.cfg.Now().UTC()
	k, err := s.store.RotateKey(ctx, id, hash, hint, now, now.Add(grace))
	if err != nil {
		return Created{}, err
	}
	s.forget()
	return Created{Key: k, Secret: secret}, nil
}

// Revoke revokes the key.
func (s *Service) Revoke(ctx context.Context, id string) (Key, error) {
	k, err := s.store.RevokeKey(ctx, id, s.cfg.Now().UTC())
	s.forget()
	return k, err
}

// SetLimits replaces the key's limits.
func (s *Service) SetLimits(ctx context.Context, id string, l Limits) (Key, error) {
	spec := Spec{Name: "x", Limits: l}
	if err := spec.Validate(); err != nil {
		return Key{}, err
	}
	k, err := s.store.UpdateKeyLimits(ctx, id, l)
	s.forget()
	return k, err
}

// Spend is the key's spend over [from, to); the zero from and to: the
// current budget period.
func (s *Service) Spend(ctx context.Context, id string, from, to time.Time) (Spend, error) {
	k, err := s.store.GetKey(ctx, id)
	if err != nil {
		return Spend{}, err
	}
	if from.IsZero() && to.IsZero() {
		p := k.BudgetPeriod
		if !p.Valid() {
			p = PeriodMonth
		}
		from = p.Start(s.cfg.Now())
		to = p.End(from)
	}
	if !from.Before(to) {
		return Spend{}, fmt.Errorf("%w: from must be before to", ErrInvalid)
	}
	if err := s.Flush(ctx); err != nil {
		return Spend{}, err
	}
	return s.store.KeySpend(ctx, id, from, to)
}

// Reserve claims a call's worst case on k's limits (Limiter.Reserve).
func (s *Service) Reserve(ctx context.Context, k *Key, cost Micros, tokens int) (*Reservation, error) {
	return s.limiter.Reserve(ctx, k, cost, tokens)
}

// Charge settles r with the call's actual usage and writes the ledger
// row (u.KeyID and u.At are set here). A call that failed before the
// provider answered settles with the zero Usage and writes no row.
func (s *Service) Charge(ctx context.Context, r *Reservation, u Usage) {
	s.limiter.Settle(ctx, r, u.Cost, u.InputTokens+u.OutputTokens)
	if r == nil || (u.Cost == 0 && u.InputTokens == 0 && u.OutputTokens == 0) {
		return
	}
	u.KeyID = r.keyID
	u.At = s.cfg.Now().UTC().Truncate(time.Microsecond)
	s.mu.Lock()
	s.pending = append(s.pending, u)
	n := len(s.pending)
	s.mu.Unlock()
	if n >= s.cfg.FlushRows {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Flush writes the pending ledger rows now.
func (s *Service) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	for {
		s.mu.Lock()
		rows := s.pending
		if len(rows) > s.cfg.FlushRows {
			rows = rows[:s.cfg.FlushRows]
		}
		s.mu.Unlock()
		if len(rows) == 0 {
			return nil
		}
		if err := s.store.RecordUsage(ctx, rows); err != nil {
			return fmt.Errorf("%w: ledger: %w", ErrUnavailable, err)
		}
		s.mu.Lock()
		s.pending = s.pending[len(rows):]
		if len(s.pending) == 0 {
			s.pending = nil
		}
		s.mu.Unlock()
	}
}

// Pending is the number of ledger rows not yet written.
func (s *Service) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *Service) writer() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.FlushEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.Flush(ctx)
		cancel()
		if err != nil && !failing {
			s.log.Error("key ledger write failed; rows kept for the next try", "pending", s.Pending(), "err", err)
		}
		failing = err != nil
	}
}

// Close stops the writer and writes what is pending (within ctx).
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	lerr := s.limiter.Close(ctx)
	if err := s.Flush(ctx); err != nil {
		return err
	}
	return lerr
}

// KeyJSON is a key as the admin API shows it.
func KeyJSON(k Key) map[string]any {
	models := k.Models
	if models == nil {
		models = []string{}
	}
	meta := json.RawMessage(k.Metadata)
	if len(meta) == 0 {
		meta = json.RawMessage("{}")
	}
	return map[string]any{
		"id": k.ID, "name": k.Name, "hint": k.Hint, "models": models, "rpm": k.RPM, "tpm": k.TPM,
		"budget_usd": k.Budget.USD(), "budget_period": k.BudgetPeriod, "expires_at": k.ExpiresAt,
		"metadata": meta, "created_at": k.CreatedAt, "revoked_at": k.RevokedAt, "rotated_at": k.RotatedAt,
		"status": status(k, time.Now()),
	}
}

// SpendJSON is a spend as the admin API shows it.
func SpendJSON(sp Spend) map[string]any {
	return map[string]any{"key_id": sp.KeyID, "from": sp.From, "to": sp.To, "requests": sp.Requests,
		"partial_requests": sp.Partial, "input_tokens": sp.InputTokens, "output_tokens": sp.OutputTokens,
		"spend_usd": sp.Cost.USD(), "spend_micros": int64(sp.Cost)}
}

func status(k Key, now time.Time) string {
	switch k.Check(now) {
	case ErrRevoked:
		return "revoked"
	case ErrExpired:
		return "expired"
	}
	return "active"
}
