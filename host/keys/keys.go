// Package keys is the AI gateway's virtual keys: API keys an operator
// issues, limits, budgets, rotates and revokes, each with the models it
// may call, requests and tokens per minute, a budget in US dollars per
// period, an expiry and free-form metadata.
//
// A key's secret is shown once, at creation or rotation; the store keeps
// only its SHA-256 (the secret is 256 random bits, so a fast hash is
// enough). Spend is kept twice: exactly, call by call, in the store's
// ledger (PostgreSQL), and as a running figure in Redis where every
// instance reserves a call's worst-case cost before the provider call and
// settles it with the actual usage after it (Limiter), so that several
// instances racing on one key cannot overspend by more than one
// reservation.
package keys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// SecretPrefix starts every key's secret, so that the gateway tells a
// virtual key from a user token at a glance (and secret scanners can
// find leaked ones).
const SecretPrefix = "wgk_"

// Limits on what an operator may configure.
const (
	MaxNameLen     = 100
	MaxModels      = 64
	MaxModelLen    = 128
	MaxMetadata    = 4096 // bytes of metadata JSON
	MaxRPM         = 1_000_000
	MaxTPM         = 1_000_000_000
	MaxBudgetUSD   = 1_000_000
	MaxRotateGrace = 7 * 24 * time.Hour
)

// Errors callers branch on (wrapped with detail).
var (
	// ErrNotFound: no key with that id (or secret).
	ErrNotFound = errors.New("keys: no such key")
	// ErrInvalid: a field out of range.
	ErrInvalid = errors.New("keys: invalid")
	// ErrRevoked, ErrExpired: the key exists but no longer opens.
	ErrRevoked = errors.New("keys: key revoked")
	ErrExpired = errors.New("keys: key expired")
	// ErrUnavailable: the store cannot answer now.
	ErrUnavailable = errors.New("keys: store unavailable")
)

// Period is what a budget is counted over.
type Period string

// Budget periods: calendar day or month in UTC, or the key's lifetime.
const (
	PeriodDay   Period = "day"
	PeriodMonth Period = "month"
	PeriodTotal Period = "total"
)

// Valid reports whether p is a known period.
func (p Period) Valid() bool { return p == PeriodDay || p == PeriodMonth || p == PeriodTotal }

// Start is the start of the period containing t (UTC); the zero time for
// PeriodTotal.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	switch p {
	case PeriodDay:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case PeriodMonth:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Unix(0, 0).UTC()
}

// End is the end of the period starting at start; far in the future for
// PeriodTotal.
func (p Period) End(start time.Time) time.Time {
	switch p {
	case PeriodDay:
		return start.AddDate(0, 0, 1)
	case PeriodMonth:
		return start.AddDate(0, 1, 0)
	}
	return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
}

// Micros is an amount in millionths of a US dollar: money is counted in
// integers so that sums are exact.
type Micros int64

// ToMicros rounds dollars to the nearest micro-dollar.
func ToMicros(usd float64) Micros { return Micros(math.Round(usd * 1e6)) }

// USD is m in dollars.
func (m Micros) USD() float64 { return float64(m) / 1e6 }

// Limits are what a key may spend and how fast. Zero means unlimited.
type Limits struct {
	// Models the key may call (the request's model as sent: "auto", a
	// tier name, a provider model); empty: every model.
	Models []string `json:"models"`
	RPM    int      `json:"rpm"`
	TPM    int      `json:"tpm"`
	// Budget per BudgetPeriod, in micro-dollars; 0: none.
	Budget       Micros `json:"-"`
	BudgetPeriod Period `json:"budget_period"`
}

// Key is one virtual key as stored (never its secret).
type Key struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Hint is the secret's prefix and last four characters, to tell keys
	// apart in listings.
	Hint      string     `json:"hint"`
	Limits               // flattened
	ExpiresAt *time.Time `json:"expires_at"`
	// Metadata is the operator's JSON object, returned as given.
	Metadata  []byte     `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	RotatedAt *time.Time `json:"rotated_at"`
}

// Check reports why k does not open at now: ErrRevoked, ErrExpired, or nil.
func (k *Key) Check(now time.Time) error {
	if k.RevokedAt != nil {
		return ErrRevoked
	}
	if k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		return ErrExpired
	}
	return nil
}

// Allows reports whether the key may call model.
func (k *Key) Allows(model string) bool {
	if len(k.Models) == 0 {
		return true
	}
	for _, m := range k.Models {
		if m == model {
			return true
		}
	}
	return false
}

// Limited reports whether calls on k need the shared counters (any rpm,
// tpm or budget).
func (k *Key) Limited() bool { return k.RPM > 0 || k.TPM > 0 || k.Budget > 0 }

// Spec is what an operator sets on a new key.
type Spec struct {
	Name string
	Limits
	ExpiresAt *time.Time
	Metadata  []byte
}

// Validate checks s's fields against the limits above.
func (s *Spec) Validate() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s: %s", ErrInvalid, field, why) }
	switch {
	case strings.TrimSpace(s.Name) == "" || len(s.Name) > MaxNameLen:
		return bad("name", fmt.Sprintf("1 to %d characters", MaxNameLen))
	case len(s.Models) > MaxModels:
		return bad("models", fmt.Sprintf("at most %d", MaxModels))
	case s.RPM < 0 || s.RPM > MaxRPM:
		return bad("rpm", fmt.Sprintf("0 (unlimited) to %d", MaxRPM))
	case s.TPM < 0 || s.TPM > MaxTPM:
		return bad("tpm", fmt.Sprintf("0 (unlimited) to %d", MaxTPM))
	case s.Budget < 0 || s.Budget > ToMicros(MaxBudgetUSD):
		return bad("budget_usd", fmt.Sprintf("0 (none) to %d", MaxBudgetUSD))
	case !s.BudgetPeriod.Valid():
		return bad("budget_period", "day, month or total")
	case len(s.Metadata) > MaxMetadata:
		return bad("metadata", fmt.Sprintf("at most %d bytes of JSON", MaxMetadata))
	}
	for _, m := range s.Models {
		if m == "" || len(m) > MaxModelLen {
			return bad("models", fmt.Sprintf("each 1 to %d characters", MaxModelLen))
		}
	}
	return nil
}

// NewSecret returns a fresh secret, its hash and its hint.
func NewSecret() (secret string, hash []byte, hint string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("keys: no randomness: " + err.Error())
	}
	secret = SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Hash(secret), HintOf(secret)
}

// NewID returns a fresh key id ("vk_" and 16 hex digits).
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("keys: no randomness: " + err.Error())
	}
	return "vk_" + hex.EncodeToString(b[:])
}

// Hash is the stored form of a secret.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// HintOf is the secret's prefix and last four characters.
func HintOf(secret string) string {
	if len(secret) < len(SecretPrefix)+8 {
		return SecretPrefix + "…"
	}
	return secret[:len(SecretPrefix)] + "…" + secret[len(secret)-4:]
}

// LooksLikeSecret reports whether token is shaped as a virtual key's
// secret (the gateway then never tries it as a user token).
func LooksLikeSecret(token string) bool { return strings.HasPrefix(token, SecretPrefix) }

// Usage is one settled call, a row of the ledger.
type Usage struct {
	KeyID        string
	At           time.Time
	RequestID    string
	Endpoint     string
	Model        string
	Tier         string
	InputTokens  int
	OutputTokens int
	Cost         Micros
	// Partial marks a stream that failed after its first byte: billed
	// for what was sent and what came back before the failure.
	Partial bool
}

// Spend is a key's spend over [From, To), from the ledger.
type Spend struct {
	KeyID        string    `json:"key_id"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	Requests     int64     `json:"requests"`
	Partial      int64     `json:"partial_requests"`
	InputTokens  int64     `json:"input_tokens"`
	OutputTokens int64     `json:"output_tokens"`
	Cost         Micros    `json:"-"`
}

// Store keeps keys and their ledger. pgstore implements it over
// PostgreSQL; MemStore in process.
type Store interface {
	// CreateKey stores k (its ID set) with the secret's hash.
	CreateKey(ctx context.Context, k Key, hash []byte) error
	// KeyBySecretHash finds the key whose current secret, or previous
	// secret within its rotation grace, hashes to hash at now.
	KeyBySecretHash(ctx context.Context, hash []byte, now time.Time) (Key, error)
	GetKey(ctx context.Context, id string) (Key, error)
	ListKeys(ctx context.Context) ([]Key, error)
	// RotateKey gives the key a new secret hash; the previous one keeps
	// opening until graceUntil (now or earlier: at once).
	RotateKey(ctx context.Context, id string, hash []byte, hint string, at, graceUntil time.Time) (Key, error)
	// RevokeKey marks the key revoked at at (idempotent: the first time
	// stays).
	RevokeKey(ctx context.Context, id string, at time.Time) (Key, error)
	// UpdateKeyLimits replaces the key's limits.
	UpdateKeyLimits(ctx context.Context, id string, l Limits) (Key, error)
	// RecordUsage appends rows to the ledger, all or none.
	RecordUsage(ctx context.Context, rows []Usage) error
	// KeySpend sums the key's ledger rows at or after from and before to.
	KeySpend(ctx context.Context, id string, from, to time.Time) (Spend, error)
}
