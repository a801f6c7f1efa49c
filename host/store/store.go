// Package store defines Wingman's domain types and the Store interface
// that every persistence backend implements: users and their locations,
// the challenge catalogue, completions and the reputation they earn,
// wingman matching, and the AI coach's chat history.
//
// Two implementations exist: memstore (in process, for a first run with
// nothing installed) and pgstore (PostgreSQL through a pgx pool). Both
// pass the same contract suite in storetest. Callers branch on the
// sentinel errors below with errors.Is; implementations wrap them.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/wingman-app/wingate/host/observe/event"
)

// Sentinel errors. Implementations wrap them with detail ("store: user 7:
// not found"); callers test with errors.Is.
var (
	// ErrNotFound means the addressed row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write clashes with existing data.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the backend cannot serve right now (database
	// unreachable, connection lost, operation timed out). Retrying later
	// may succeed; the HTTP layer answers 503.
	ErrUnavailable = errors.New("store unavailable")
	// ErrInvalid means an argument is out of range or malformed.
	ErrInvalid = errors.New("invalid argument")
)

// Store is the persistence contract of the Wingman API. Implementations are
// safe for concurrent use.
type Store interface {
	// Ping reports whether the backend can serve (nil) or not.
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close()

	// CreateUser stores a new user. A zero u.ID gets the next free id;
	// an id already taken is ErrConflict. CreatedAt is set when zero.
	CreateUser(ctx context.Context, u User) (User, error)
	// GetUser returns one user's profile.
	GetUser(ctx context.Context, id int64) (User, error)

	// ListChallenges returns one page of the catalogue ordered by id,
	// filtered by f. Page.Next is the cursor of the following page, 0 at
	// the end.
	ListChallenges(ctx context.Context, f ChallengeFilter) (ChallengePage, error)
	// GetChallenge returns one challenge.
	GetChallenge(ctx context.Context, id int64) (Challenge, error)
	// CompleteChallenge records that a user completed a challenge and adds
	// its points to their reputation, both in one transaction. A user
	// completes a given challenge at most once per UTC day: repeating the
	// call on the same day returns the existing completion with
	// Created=false and changes nothing.
	CompleteChallenge(ctx context.Context, userID, challengeID int64, at time.Time) (Completion, error)
	// GetReputation returns a user's score, level, per-category breakdown
	// and up to recent most recent completions.
	GetReputation(ctx context.Context, userID int64, recent int) (Reputation, error)

	// GetLocation returns a user's last stored location (ErrNotFound when
	// none was stored).
	GetLocation(ctx context.Context, userID int64) (Location, error)
	// PutLocation stores a user's location and returns what was stored.
	PutLocation(ctx context.Context, loc Location) (Location, error)
	// FindMatches returns users open to being a wingman within q.RadiusKM
	// of q.UserID's location, best first (see MatchRank). ErrNotFound when
	// the caller has no location.
	FindMatches(ctx context.Context, q MatchQuery) ([]Match, error)

	ChatStore
}

// ChatStore persists the AI coach's conversations.
type ChatStore interface {
	// CreateChatSession opens a new session owned by userID.
	CreateChatSession(ctx context.Context, userID int64, title string) (ChatSession, error)
	// GetChatSession returns one session.
	GetChatSession(ctx context.Context, id string) (ChatSession, error)
	// ListChatSessions returns up to limit of userID's sessions, newest
	// first (an unknown user has none).
	ListChatSessions(ctx context.Context, userID int64, limit int) ([]ChatSession, error)
	// AppendChatMessage stores m and sets m.ID and m.CreatedAt. IDs grow
	// monotonically within a session.
	AppendChatMessage(ctx context.Context, m *ChatMessage) error
	// ListChatMessages returns up to limit messages of a session with
	// ID > afterID, in ascending ID order.
	ListChatMessages(ctx context.Context, sessionID string, afterID int64, limit int) ([]ChatMessage, error)
	// GetChatSummary returns the session's summary (ErrNotFound when none).
	GetChatSummary(ctx context.Context, sessionID string) (ChatSummary, error)
	// PutChatSummary stores (replaces) the session's summary.
	PutChatSummary(ctx context.Context, s ChatSummary) error
}

// User is a Wingman member's public profile.
type User struct {
	ID            int64     `json:"id"`
	Name          string    `json:"name"`
	City          string    `json:"city"`
	OpenToWingman bool      `json:"open_to_wingman"`
	CreatedAt     time.Time `json:"created_at"`
}

// Challenge categories and difficulties of the catalogue.
var (
	Categories   = []string{"conversation", "confidence", "dating", "friendship", "public-speaking", "networking"}
	Difficulties = []string{"easy", "medium", "hard", "expert"}
)

// ValidCategory reports whether c is a known category.
func ValidCategory(c string) bool { return contains(Categories, c) }

// ValidDifficulty reports whether d is a known difficulty.
func ValidDifficulty(d string) bool { return contains(Difficulties, d) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Challenge is one entry of the catalogue.
type Challenge struct {
	ID          int64  `json:"id"`
	Slug        string `json:"slug"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Category    string `json:"category"`
	Difficulty  string `json:"difficulty"`
	Points      int    `json:"points"`
}

// MaxPageSize caps ChallengeFilter.Limit.
const MaxPageSize = 100

// ChallengeFilter selects a page of the catalogue. Empty strings match
// everything; After is the cursor (the last ID of the previous page);
// Limit is 1..MaxPageSize.
type ChallengeFilter struct {
	Category   string
	Difficulty string
	After      int64
	Limit      int
}

// Validate returns an ErrInvalid-wrapped error naming the bad field.
func (f ChallengeFilter) Validate() error {
	switch {
	case f.Category != "" && !ValidCategory(f.Category):
		return Invalid("category", "unknown category")
	case f.Difficulty != "" && !ValidDifficulty(f.Difficulty):
		return Invalid("difficulty", "unknown difficulty")
	case f.After < 0:
		return Invalid("cursor", "must not be negative")
	case f.Limit < 1 || f.Limit > MaxPageSize:
		return Invalid("limit", "must be between 1 and 100")
	}
	return nil
}

// ChallengePage is one page of the catalogue.
type ChallengePage struct {
	Items []Challenge
	// Next is the cursor for the following page; 0 when this is the last.
	Next int64
}

// Completion is one completed challenge.
type Completion struct {
	ID          int64     `json:"id"`
	UserID      int64     `json:"user_id"`
	ChallengeID int64     `json:"challenge_id"`
	Points      int       `json:"points"`
	CompletedAt time.Time `json:"completed_at"`
	// Created is false when the call repeated an existing completion.
	Created bool `json:"created"`
	// Score is the user's total reputation after the completion.
	Score int `json:"score"`
}

// CategoryScore is a user's reputation in one category.
type CategoryScore struct {
	Category    string `json:"category"`
	Score       int    `json:"score"`
	Completions int    `json:"completions"`
}

// ReputationEvent is one change of reputation (a completion).
type ReputationEvent struct {
	ChallengeID int64     `json:"challenge_id"`
	Title       string    `json:"title"`
	Category    string    `json:"category"`
	Points      int       `json:"points"`
	At          time.Time `json:"at"`
}

// Reputation is a user's standing.
type Reputation struct {
	UserID int64 `json:"user_id"`
	Score  int   `json:"score"`
	Level  int   `json:"level"`
	// Categories lists every category with a non-zero score, by name.
	Categories []CategoryScore `json:"categories"`
	// Recent lists the latest completions, newest first.
	Recent []ReputationEvent `json:"recent"`
}

// Level maps a reputation score to a level: level n needs
// 50·(n-1)² points, so 0 → 1, 50 → 2, 200 → 3, 450 → 4, 800 → 5, …
func Level(score int) int {
	if score <= 0 {
		return 1
	}
	n := 1
	for 50*n*n <= score {
		n++
	}
	return n
}

// Location is where a user is.
type Location struct {
	UserID    int64     `json:"user_id"`
	Lat       float64   `json:"lat"`
	Lon       float64   `json:"lon"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate returns an ErrInvalid-wrapped error naming the bad field.
func (l Location) Validate() error {
	switch {
	case !(l.Lat >= -90 && l.Lat <= 90): // also rejects NaN
		return Invalid("lat", "must be between -90 and 90")
	case !(l.Lon >= -180 && l.Lon <= 180):
		return Invalid("lon", "must be between -180 and 180")
	}
	return nil
}

// Matching limits.
const (
	MaxMatchRadiusKM = 200
	MaxMatchLimit    = 50
)

// MatchQuery asks for wingmen near a user.
type MatchQuery struct {
	UserID   int64
	RadiusKM float64
	Limit    int
}

// Validate returns an ErrInvalid-wrapped error naming the bad field.
func (q MatchQuery) Validate() error {
	switch {
	case !(q.RadiusKM > 0 && q.RadiusKM <= MaxMatchRadiusKM):
		return Invalid("radius_km", "must be in (0, 200]")
	case q.Limit < 1 || q.Limit > MaxMatchLimit:
		return Invalid("limit", "must be between 1 and 50")
	}
	return nil
}

// Match is one candidate wingman.
type Match struct {
	UserID     int64   `json:"user_id"`
	Name       string  `json:"name"`
	City       string  `json:"city"`
	DistanceKM float64 `json:"distance_km"`
	Score      int     `json:"score"`
	Level      int     `json:"level"`
	// Rank is MatchRank's value; lower is better.
	Rank float64 `json:"rank"`
}

// Ranking weights and scale, shared by every implementation.
const (
	// RankDistanceWeight weighs distance as a fraction of the radius.
	RankDistanceWeight = 0.7
	// RankReputationWeight weighs the reputation gap.
	RankReputationWeight = 0.3
	// RankReputationScale is the score gap counted as fully incompatible.
	RankReputationScale = 1000.0
)

// MatchRank orders candidates: 0.7·(distance/radius) +
// 0.3·min(1, |score gap|/1000). Lower is better; ties go to the lower
// user id. Close wingmen of similar standing come first.
func MatchRank(distanceKM, radiusKM float64, myScore, theirScore int) float64 {
	gap := float64(myScore - theirScore)
	if gap < 0 {
		gap = -gap
	}
	g := gap / RankReputationScale
	if g > 1 {
		g = 1
	}
	return RankDistanceWeight*(distanceKM/radiusKM) + RankReputationWeight*g
}

// EarthRadiusKM is the mean Earth radius used by every distance.
const EarthRadiusKM = 6371.0088

// ChatSession is one conversation with the AI coach, owned by one user.
type ChatSession struct {
	ID        string    `json:"id"`
	UserID    int64     `json:"user_id"`
	Title     string    `json:"title"`
	CreatedAt time.Time `json:"created_at"`
}

// Chat message roles.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleSystem    = "system"
)

// ChatMessage is one message of a session with its token accounting.
type ChatMessage struct {
	ID                    int64     `json:"id"`
	SessionID             string    `json:"session_id"`
	Role                  string    `json:"role"`
	Text                  string    `json:"text"`
	Tokens                int       `json:"tokens"`
	Tier                  string    `json:"tier,omitempty"`
	Provider              string    `json:"provider,omitempty"`
	Model                 string    `json:"model,omitempty"`
	InputTokens           int       `json:"input_tokens,omitempty"`
	OutputTokens          int       `json:"output_tokens,omitempty"`
	CacheReadTokens       int       `json:"cache_read_tokens,omitempty"`
	CacheWriteTokens      int       `json:"cache_write_tokens,omitempty"`
	CostUSD               float64   `json:"cost_usd,omitempty"`
	BaselineCostUSD       float64   `json:"baseline_cost_usd,omitempty"`
	ContextTokens         int       `json:"context_tokens,omitempty"`
	BaselineContextTokens int       `json:"baseline_context_tokens,omitempty"`
	LatencyMS             int       `json:"latency_ms,omitempty"`
	Status                string    `json:"status,omitempty"`
	CreatedAt             time.Time `json:"created_at"`
}

// ValidRole reports whether r is a chat role.
func ValidRole(r string) bool { return r == RoleUser || r == RoleAssistant || r == RoleSystem }

// ChatSummary condenses a session's messages up to UpToMessageID.
type ChatSummary struct {
	SessionID     string    `json:"session_id"`
	UpToMessageID int64     `json:"up_to_message_id"`
	Text          string    `json:"text"`
	Tokens        int       `json:"tokens"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// MaxChatPage caps ListChatMessages' limit.
const MaxChatPage = 1000

// NewSessionID returns a random 32-hex-digit session id.
func NewSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// FieldError is an invalid-argument error naming the offending field. It
// matches ErrInvalid under errors.Is.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "store: invalid " + e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns a *FieldError for field.
func Invalid(field, reason string) error { return &FieldError{Field: field, Reason: reason} }

// PoolStats is a snapshot of a connection pool (event.PoolStats, the
// observability layer's vocabulary).
type PoolStats = event.PoolStats

// PoolStatser is implemented by stores backed by a connection pool.
type PoolStatser interface {
	PoolStats() PoolStats
}

// QueryObserver receives the duration of each named query. A nil observer
// is a no-op for implementations. It must be safe for concurrent use and
// fast (it runs on the query path).
type QueryObserver interface {
	// ObserveQuery reports one query: outcome is QueryOutcome of its error.
	ObserveQuery(name string, d time.Duration, outcome string)
}

// QueryOutcome classifies a query's error for QueryObserver: "ok",
// "not_found" (ErrNotFound), "canceled" (context cancelled or past its
// deadline) or "error".
func QueryOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}
