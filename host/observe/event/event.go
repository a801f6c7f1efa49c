// Package event is the vocabulary of the observability layer: the events
// and snapshots the observed packages (cache, chat, llm, store) report, and
// the small interfaces they report them through. It imports only the
// standard library, so an observed package depends on it alone, and
// host/observe (the metrics sink that implements the interfaces) never
// imports the packages it observes; the server assembly wires one to the
// other.
package event

import "time"

// CacheTier is where a response came from.
type CacheTier uint8

// The tiers, nearest first.
const (
	CacheTierNone   CacheTier = iota // not served by the cache (bypass)
	CacheTierLocal                   // the in-process tier
	CacheTierRedis                   // the shared Redis tier
	CacheTierOrigin                  // the handler
)

// String returns the tier's metric label.
func (t CacheTier) String() string {
	switch t {
	case CacheTierLocal:
		return "local"
	case CacheTierRedis:
		return "redis"
	case CacheTierOrigin:
		return "origin"
	}
	return "none"
}

// CacheResult is what happened to one request in the response cache.
type CacheResult uint8

// The events.
const (
	CacheHit    CacheResult = iota // served fresh from a tier
	CacheMiss                      // served by the origin
	CacheStale                     // served stale while a refresh runs
	CacheBypass                    // the policy said not to cache
)

// String returns the event's metric label; it is also the X-Cache value.
func (e CacheResult) String() string {
	switch e {
	case CacheHit:
		return "HIT"
	case CacheMiss:
		return "MISS"
	case CacheStale:
		return "STALE"
	case CacheBypass:
		return "BYPASS"
	}
	return "UNKNOWN"
}

// Usage is what a provider reports it billed for one call. InputTokens
// counts only uncached input; cached input is in CacheReadTokens (read from
// the prompt cache) and CacheWriteTokens (written to it), as in Anthropic's
// usage block. Clients of providers that report cached tokens as part of
// the input (OpenAI) subtract them.
type Usage struct {
	InputTokens      int `json:"input_tokens"`
	OutputTokens     int `json:"output_tokens"`
	CacheReadTokens  int `json:"cache_read_input_tokens"`
	CacheWriteTokens int `json:"cache_creation_input_tokens"`
}

// TotalInput returns every input token, cached or not.
func (u Usage) TotalInput() int { return u.InputTokens + u.CacheReadTokens + u.CacheWriteTokens }

// Add returns the sum of u and v.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		InputTokens:      u.InputTokens + v.InputTokens,
		OutputTokens:     u.OutputTokens + v.OutputTokens,
		CacheReadTokens:  u.CacheReadTokens + v.CacheReadTokens,
		CacheWriteTokens: u.CacheWriteTokens + v.CacheWriteTokens,
	}
}

// Purposes of a CallEvent.
const (
	PurposeAnswer  = "answer"  // a chat or gateway answer
	PurposeSummary = "summary" // a summary of dropped history
)

// CallEvent describes one provider call.
type CallEvent struct {
	Purpose  string // PurposeAnswer or PurposeSummary
	Tier     string // tier the call was made for; empty for a passed-through model
	Provider string
	Model    string
	Usage    Usage
	CostUSD  float64
	Latency  time.Duration
	// FirstToken is from the call's start to the answer's first token
	// (the whole answer when it is not streamed); zero for a failed call.
	// FirstChunk is FirstToken for a streamed call, zero otherwise.
	FirstToken, FirstChunk time.Duration
	// Err is nil on success; ErrKind is its error kind label (llm.Kind).
	Err     error
	ErrKind string
}

// TurnEvent describes one answered (or failed) message.
type TurnEvent struct {
	Endpoint string // "chat" or "gateway"
	// RoutedTier is what the route policy chose; Tier is what answered
	// (different after a fallback; empty when every tier failed).
	RoutedTier string
	Tier       string
	Model      string
	Fallbacks  int
	Failed     bool
	Simulated  bool
	// CostUSD includes any summary written for the turn;
	// BaselineCostUSD is the same turn uncompressed on the premium tier.
	CostUSD         float64
	BaselineCostUSD float64
	// ContextTokens is what was sent; BaselineContextTokens what the
	// uncompressed conversation would have sent.
	ContextTokens         int
	BaselineContextTokens int
	Latency               time.Duration
}

// Cache receives the response cache's events (cache.Observer is the same
// method set). Implementations must be fast and safe for concurrent use.
type Cache interface {
	// CacheEvent is called once per request: route is the route template,
	// tier where the response came from (CacheTierNone for a bypass).
	CacheEvent(route string, tier CacheTier, res CacheResult)
	// RedisState is called when the Redis tier goes (up=false: the
	// breaker opened) and when it comes back (up=true).
	RedisState(up bool)
}

// Chat receives the AI chat's events (chat.Observer is the same method
// set). Methods are called synchronously on the request path.
type Chat interface {
	// LLMCall is reported for every provider call, failed or not.
	LLMCall(CallEvent)
	// Turn is reported once per message answered or failed.
	Turn(TurnEvent)
}

// Pool is a connection pool that reports its stats (store.PoolStatser).
type Pool interface {
	PoolStats() PoolStats
}

// PoolStats is a snapshot of a connection pool.
type PoolStats struct {
	Acquired int32 `json:"acquired"`
	Idle     int32 `json:"idle"`
	Total    int32 `json:"total"`
	Max      int32 `json:"max"`
	// Utilisation is Acquired/Max in [0, 1].
	Utilisation float64 `json:"utilisation"`
	// AcquireCount and AcquireWait are cumulative: successful acquires and
	// the time spent waiting for a connection when none was idle.
	AcquireCount int64         `json:"acquire_count"`
	AcquireWait  time.Duration `json:"acquire_wait_ns"`
	// RecentAcquireWait is the mean wait per acquire over the last window
	// (see Health).
	RecentAcquireWait time.Duration `json:"recent_acquire_wait_ns"`
	// CanceledAcquires counts acquires abandoned (timeout, cancellation).
	CanceledAcquires int64 `json:"canceled_acquires"`
	// Reachable is false while the database cannot be reached.
	Reachable bool `json:"reachable"`
	// Health is a 0-100 score; the implementation documents its formula.
	Health int `json:"health"`
}

// ActivePolicy is the policy version serving one kind, as the policy
// engine reports it to the dashboard.
type ActivePolicy struct {
	Kind    string    `json:"kind"`
	Policy  string    `json:"policy"`
	Version string    `json:"version"`
	Since   time.Time `json:"since,omitzero"`
	// Shadow names a version being shadow-tested beside it, if any.
	Shadow string `json:"shadow,omitempty"`
	// Quarantined is true while the version fails too often to be asked.
	Quarantined bool `json:"quarantined,omitempty"`
	// ExecTier is how the version's calls run: "compiled", or
	// "interpreted" while a tiered start's compilation has not ended.
	ExecTier string `json:"exec_tier,omitempty"`
}
