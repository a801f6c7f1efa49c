// Package cache is Wingate's two-tier response cache: an in-process tier
// (otter) in front of a shared Redis tier, with request coalescing,
// stale-while-revalidate, tag purges broadcast to every instance through
// Redis pub/sub, and a circuit breaker that turns a Redis outage into an
// in-process-only cache without failing a request.
//
// The package knows nothing of HTTP frameworks: a caller hands Get a key,
// lifetimes, tags and a fill function, and gets back an Entry and how it
// was served.
package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/observe/event"
)

// Tier is where a response came from (event.CacheTier).
type Tier = event.CacheTier

// The tiers, nearest first.
const (
	TierNone   = event.CacheTierNone   // not served by the cache (bypass)
	TierLocal  = event.CacheTierLocal  // the in-process tier
	TierRedis  = event.CacheTierRedis  // the shared Redis tier
	TierOrigin = event.CacheTierOrigin // the handler
)

// Event is what happened to one request, as reported to the Observer
// (event.CacheResult); its String is also the X-Cache value.
type Event = event.CacheResult

// The events.
const (
	EventHit    = event.CacheHit    // served fresh from a tier
	EventMiss   = event.CacheMiss   // served by the origin
	EventStale  = event.CacheStale  // served stale while a refresh runs
	EventBypass = event.CacheBypass // the policy said not to cache
)

// Observer receives the cache's events. Implementations must be fast and
// safe for concurrent use; a nil Observer is a no-op.
type Observer interface {
	// CacheEvent is called once per request: route is the route template,
	// tier where the response came from (TierNone for a bypass).
	CacheEvent(route string, tier Tier, ev Event)
	// RedisState is called when the Redis tier goes (up=false: the
	// breaker opened) and when it comes back (up=true).
	RedisState(up bool)
}

// Config configures a Cache. The zero value is an in-process cache with the
// defaults below.
type Config struct {
	// Prefix starts every Redis key and channel name; default "wingate:cache".
	Prefix string
	// MaxLocalBytes bounds the in-process tier; default 64 MiB.
	MaxLocalBytes uint64
	// MaxEntryBytes: larger responses are never stored; default 256 KiB.
	MaxEntryBytes int
	// Redis is the shared tier; nil keeps the cache in-process only. Build
	// it with OpenRedis to get the short timeouts the breaker relies on. A
	// *redis.ClusterClient is a Redis Cluster; anything else one server
	// (or a Sentinel primary).
	Redis redis.UniversalClient
	// RedisShards is the number of hash-tag shards entries are spread
	// over (shard.go); every instance sharing a Redis must use the same.
	// Zero: DefaultClusterShards on a cluster, 1 otherwise; else a power
	// of two up to MaxRedisShards.
	RedisShards int
	// ClassicPubSub sends purge notices with PUBLISH/SUBSCRIBE even on a
	// cluster whose servers have sharded pub/sub (SPUBLISH/SSUBSCRIBE,
	// Redis 7 and later), which the cache uses there by default. Every
	// instance sharing a cluster must choose the same.
	ClassicPubSub bool
	// RedisTimeout bounds every Redis call made on a request's path;
	// default 50 ms.
	RedisTimeout time.Duration
	// BreakerFailures is the number of consecutive Redis errors (timeouts
	// included) that open the breaker; default 3.
	BreakerFailures int
	// ProbeInterval is how often an open breaker pings Redis; default
	// 250 ms.
	ProbeInterval time.Duration
	// Logger receives the state-change lines; default discards.
	Logger *slog.Logger
	// Observer receives per-request events and breaker changes.
	Observer Observer
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "wingate:cache"
	}
	if c.MaxLocalBytes == 0 {
		c.MaxLocalBytes = 64 << 20
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = 256 << 10
	}
	if c.RedisTimeout == 0 {
		c.RedisTimeout = 50 * time.Millisecond
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 3
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 250 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ErrBadRequest is returned by Get for a request it cannot serve.
var ErrBadRequest = errors.New("cache: request without key or fill function")

// Request describes one cacheable read.
type Request struct {
	// Key is the full key, built with Cache.Key.
	Key string
	// Route labels the request's events (the route template).
	Route string
	// TTL and Stale are the entry's lifetimes if it is stored.
	TTL, Stale time.Duration
	// Tags name the purges that drop the entry.
	Tags []string
	// Fill calls the origin on a miss. It is called at most once for all
	// concurrent requests of Key, in a goroutine of its own, with a context
	// that no caller's cancellation ends. It returns the response whatever
	// its status; only 200s within MaxEntryBytes are stored.
	Fill func(ctx context.Context) (*Entry, error)
	// Refresh re-fetches a stale entry in the background after the
	// request that found it has been answered; nil uses Fill. It must not
	// use anything that lives only as long as the request.
	Refresh func(ctx context.Context) (*Entry, error)
	// PrepareRefresh, when set, is called on the caller's goroutine, during
	// Get, when a background refresh is about to start; the function it
	// returns performs the refresh. It lets a caller copy what the refresh
	// needs from its request only when one runs. It takes precedence over
	// Refresh.
	PrepareRefresh func() func(ctx context.Context) (*Entry, error)
}

// Result says how a Get was served.
type Result struct {
	Entry *Entry
	Tier  Tier
	Event Event // EventHit, EventMiss or EventStale
	// Leader is true when this caller's own Fill produced Entry.
	Leader bool
	// Age is the entry's age when it was served.
	Age time.Duration
}

// Stats is a snapshot of the cache's counters since New.
type Stats struct {
	LocalHits, RedisHits, Misses, Stale uint64
	Fills, Coalesced, Refreshes         uint64
	FillErrors, RefreshFailures         uint64
	Purges, PurgesReceived              uint64
	RedisErrors, RedisDecodeErrors      uint64
	WritesDropped                       uint64
	// RedisSlowest is the longest a request waited on one Redis call.
	RedisSlowest time.Duration
	RedisUp      bool
	LocalEntries int
	LocalBytes   uint64
}

type counters struct {
	localHits, redisHits, misses, stale atomic.Uint64
	fills, coalesced, refreshes         atomic.Uint64
	fillErrors, refreshFailures         atomic.Uint64
	purges, purgesReceived              atomic.Uint64
	redisErrors, redisDecodeErrors      atomic.Uint64
	writesDropped                       atomic.Uint64
	redisSlowest                        atomic.Int64
}

type localEntry struct {
	e   *Entry
	seq uint64 // purge sequence when the load that produced it began
}

type mark struct {
	seq uint64
	at  time.Time
}

// Cache is the two-tier cache. Create it with New; it is safe for
// concurrent use. Close releases its goroutines.
type Cache struct {
	cfg       Config
	log       *slog.Logger
	obs       Observer
	keyPrefix string
	tagPrefix string
	channel   string
	instance  string
	shards    []string // hash tags of the Redis shards
	psMode    atomic.Int32

	local     *otter.Cache[string, *localEntry]
	loads     flight
	refreshes flight

	// Purges: purgeSeq counts local purges; marks maps a purged tag to
	// the sequence number and time of its last purge. An entry loaded
	// before a purge of one of its tags is dropped when next read.
	marksMu   sync.RWMutex
	purgeSeq  atomic.Uint64
	marks     map[string]mark
	lastPrune time.Time
	maxLife   atomic.Int64

	rdb      redis.UniversalClient
	redisOut atomic.Bool // breaker open
	fails    atomic.Int32
	writes   chan writeJob

	pendingMu       sync.Mutex
	pending         map[string]struct{}
	pendingOverflow bool

	stats  counters
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a cache. With cfg.Redis set it pings Redis (a failure only
// opens the breaker, logged once), subscribes to purges and starts the
// background writers.
func New(cfg Config) (*Cache, error) {
	cfg.defaults()
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, errors.New("cache: the prefix must not contain { or }, which would change the keys' hash slots")
	}
	if cfg.RedisShards < 0 || cfg.RedisShards > MaxRedisShards || cfg.RedisShards&(cfg.RedisShards-1) != 0 {
		return nil, fmt.Errorf("cache: RedisShards must be a power of two up to %d", MaxRedisShards)
	}
	if cfg.RedisShards == 0 {
		cfg.RedisShards = 1
		if _, ok := cfg.Redis.(*redis.ClusterClient); ok {
			cfg.RedisShards = DefaultClusterShards
		}
	}
	c := &Cache{
		cfg:       cfg,
		log:       cfg.Logger,
		obs:       cfg.Observer,
		keyPrefix: cfg.Prefix + ":" + FormatVersion + ":k:",
		tagPrefix: cfg.Prefix + ":" + FormatVersion + ":t:",
		channel:   cfg.Prefix + ":" + FormatVersion + ":purge",
		instance:  newInstanceID(),
		marks:     make(map[string]mark),
		pending:   make(map[string]struct{}),
		rdb:       cfg.Redis,
		shards:    shardTags(cfg.RedisShards),
	}
	local, err := otter.New(&otter.Options[string, *localEntry]{
		MaximumWeight: cfg.MaxLocalBytes,
		Weigher: func(k string, v *localEntry) uint32 {
			w := len(k) + len(v.e.Body) + len(v.e.ContentType) + len(v.e.ETag) + 96
			for _, t := range v.e.Tags {
				w += len(t) + 16
			}
			return uint32(min(w, 1<<31))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *localEntry]) time.Duration {
			return max(e.Value.e.remaining(time.Now()), time.Millisecond)
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("cache: in-process tier: %w", err)
	}
	c.local = local
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.rdb != nil {
		c.startRedis()
	}
	return c, nil
}

func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close stops the background goroutines. The cache must not be used after.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
	c.local.StopAllGoroutines()
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{
		LocalHits: s.localHits.Load(), RedisHits: s.redisHits.Load(),
		Misses: s.misses.Load(), Stale: s.stale.Load(),
		Fills: s.fills.Load(), Coalesced: s.coalesced.Load(), Refreshes: s.refreshes.Load(),
		FillErrors: s.fillErrors.Load(), RefreshFailures: s.refreshFailures.Load(),
		Purges: s.purges.Load(), PurgesReceived: s.purgesReceived.Load(),
		RedisErrors: s.redisErrors.Load(), RedisDecodeErrors: s.redisDecodeErrors.Load(),
		WritesDropped: s.writesDropped.Load(),
		RedisSlowest:  time.Duration(s.redisSlowest.Load()),
		RedisUp:       c.redisUp(),
		LocalEntries:  c.local.EstimatedSize(),
		LocalBytes:    c.local.WeightedSize(),
	}
}

// LocalEntries is the approximate number of entries in the in-process
// tier.
func (c *Cache) LocalEntries() int { return c.local.EstimatedSize() }

// MaxEntryBytes is the size over which responses are not stored.
func (c *Cache) MaxEntryBytes() int { return c.cfg.MaxEntryBytes }

// Event reports a request the caller served without Get (a bypass) to the
// observer.
func (c *Cache) Event(route string, tier Tier, ev Event) {
	if c.obs != nil {
		c.obs.CacheEvent(route, tier, ev)
	}
}

// Fresh serves a fresh in-process hit of key, reporting it for route; ok
// is false for anything else (absent, stale, purged), which the caller
// then passes to Get. It is Get's first step without building a Request,
// for the hot path.
func (c *Cache) Fresh(key, route string) (res Result, ok bool) {
	le, found := c.local.GetIfPresent(key)
	if !found || !c.validLocal(le) {
		return Result{}, false
	}
	now := time.Now()
	if !le.e.Fresh(now) {
		return Result{}, false
	}
	c.stats.localHits.Add(1)
	c.Event(route, TierLocal, EventHit)
	return Result{Entry: le.e, Tier: TierLocal, Event: EventHit, Age: le.e.Age(now)}, true
}

// Get serves r from the in-process tier, then Redis, then r.Fill, in that
// order. A stale entry within its stale window is served at once while
// exactly one background refresh runs; an origin that fails during the
// refresh leaves the stale entry in place. Get fails only when the fill
// does (or ctx ends while waiting for it); the failure is this caller's
// alone.
func (c *Cache) Get(ctx context.Context, r *Request) (Result, error) {
	if r.Key == "" || r.Fill == nil {
		return Result{}, ErrBadRequest
	}
	now := time.Now()
	if le, ok := c.local.GetIfPresent(r.Key); ok {
		if c.validLocal(le) {
			if le.e.Fresh(now) {
				c.stats.localHits.Add(1)
				c.Event(r.Route, TierLocal, EventHit)
				return Result{Entry: le.e, Tier: TierLocal, Event: EventHit, Age: le.e.Age(now)}, nil
			}
			if le.e.Usable(now) {
				c.stats.stale.Add(1)
				c.Event(r.Route, TierLocal, EventStale)
				c.refresh(r)
				return Result{Entry: le.e, Tier: TierLocal, Event: EventStale, Age: le.e.Age(now)}, nil
			}
		} else {
			c.local.Invalidate(r.Key)
		}
	}
	res, leader := c.loads.do(ctx, r.Key, func(ctx context.Context) loadResult { return c.load(ctx, r) })
	if !leader {
		c.stats.coalesced.Add(1)
	}
	if res.err != nil {
		return Result{}, res.err
	}
	now = time.Now()
	out := Result{Entry: res.entry, Tier: res.tier, Leader: leader && res.tier == TierOrigin, Age: res.entry.Age(now)}
	switch {
	case res.tier == TierOrigin:
		out.Event = EventMiss
		out.Age = 0
		c.stats.misses.Add(1)
	case res.entry.Fresh(now):
		out.Event = EventHit
		c.stats.redisHits.Add(1)
	default:
		out.Event = EventStale
		c.stats.stale.Add(1)
		c.refresh(r)
	}
	c.Event(r.Route, out.Tier, out.Event)
	return out, nil
}

// load runs once per key for concurrent callers: Redis, then the origin.
func (c *Cache) load(ctx context.Context, r *Request) loadResult {
	seq := c.purgeSeq.Load()
	if c.redisUp() {
		if e := c.redisGet(ctx, r.Key); e != nil && e.Usable(time.Now()) && c.validRemote(e) {
			c.local.Set(r.Key, &localEntry{e: e, seq: seq})
			return loadResult{entry: e, tier: TierRedis}
		}
	}
	e, err := c.fill(ctx, r.Fill, r, seq)
	if err != nil {
		c.stats.fillErrors.Add(1)
		return loadResult{err: err}
	}
	return loadResult{entry: e, tier: TierOrigin}
}

// fill calls the origin and stores what may be stored.
func (c *Cache) fill(ctx context.Context, fn func(context.Context) (*Entry, error), r *Request, seq uint64) (*Entry, error) {
	start := time.Now()
	c.stats.fills.Add(1)
	e, err := fn(ctx)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, errors.New("cache: fill returned no entry")
	}
	e.Created, e.TTL, e.Stale, e.Tags = start, r.TTL, r.Stale, r.Tags
	if e.Status == 200 && e.ETag == "" {
		e.ETag = ETagOf(e.ContentType, e.Body)
	}
	c.store(r.Key, e, seq)
	return e, nil
}

// refresh starts the one background refresh of r's key unless it runs.
func (c *Cache) refresh(r *Request) {
	if c.refreshes.running(r.Key) {
		return
	}
	fn := r.Refresh
	if r.PrepareRefresh != nil {
		fn = r.PrepareRefresh()
	}
	if fn == nil {
		fn = r.Fill
	}
	req := *r
	c.refreshes.goAsync(c.ctx, r.Key, func(ctx context.Context) loadResult {
		c.stats.refreshes.Add(1)
		e, err := c.fill(ctx, fn, &req, c.purgeSeq.Load())
		if err == nil && e.Status != 200 {
			err = fmt.Errorf("cache: refresh got status %d", e.Status)
		}
		if err != nil {
			c.stats.refreshFailures.Add(1)
		}
		return loadResult{entry: e, err: err}
	})
}

// storable reports whether e may be kept.
func (c *Cache) storable(e *Entry) bool {
	if e.Status != 200 || len(e.Body) > c.cfg.MaxEntryBytes || e.TTL <= 0 {
		return false
	}
	for _, t := range e.Tags {
		if !validTag(t) {
			return false
		}
	}
	return true
}

// store keeps e in both tiers unless one of its tags was purged since the
// load that produced it began.
func (c *Cache) store(key string, e *Entry, seq uint64) {
	if !c.storable(e) || !c.validSeq(e.Tags, seq) {
		return
	}
	life := int64(e.TTL + e.Stale)
	for {
		cur := c.maxLife.Load()
		if life <= cur || c.maxLife.CompareAndSwap(cur, life) {
			break
		}
	}
	c.local.Set(key, &localEntry{e: e, seq: seq})
	if c.rdb != nil && c.redisUp() {
		select {
		case c.writes <- writeJob{key: key, e: e, seq: seq}:
		default:
			c.stats.writesDropped.Add(1)
		}
	}
}

func (c *Cache) validLocal(le *localEntry) bool {
	if c.purgeSeq.Load() <= le.seq {
		return true
	}
	return c.validSeq(le.e.Tags, le.seq)
}

// validSeq reports whether no tag was purged after sequence seq.
func (c *Cache) validSeq(tags []string, seq uint64) bool {
	if len(tags) == 0 || c.purgeSeq.Load() <= seq {
		return true
	}
	c.marksMu.RLock()
	defer c.marksMu.RUnlock()
	for _, t := range tags {
		if m, ok := c.marks[t]; ok && m.seq > seq {
			return false
		}
	}
	return true
}

// validRemote reports whether an entry read from Redis was created after
// every local purge of its tags (a guard for purges that could not reach
// Redis yet).
func (c *Cache) validRemote(e *Entry) bool {
	if len(e.Tags) == 0 || c.purgeSeq.Load() == 0 {
		return true
	}
	c.marksMu.RLock()
	defer c.marksMu.RUnlock()
	for _, t := range e.Tags {
		if m, ok := c.marks[t]; ok && !e.Created.After(m.at) {
			return false
		}
	}
	return true
}

// purgeLocal drops every in-process entry carrying one of tags.
func (c *Cache) purgeLocal(tags []string) {
	now := time.Now()
	c.marksMu.Lock()
	defer c.marksMu.Unlock()
	n := c.purgeSeq.Add(1)
	for _, t := range tags {
		c.marks[t] = mark{seq: n, at: now}
	}
	// Marks older than the longest entry lifetime protect nothing.
	if len(c.marks) > 1024 && now.Sub(c.lastPrune) > time.Second {
		c.lastPrune = now
		life := time.Duration(c.maxLife.Load())
		for t, m := range c.marks {
			if now.Sub(m.at) > life+time.Second {
				delete(c.marks, t)
			}
		}
	}
}

// Purge drops every entry carrying one of tags, in this instance's
// in-process tier, in Redis and, through Redis pub/sub, in every other
// instance's in-process tier. With Redis unavailable the purge is applied
// locally and replayed to Redis when it is back. Purge never fails.
func (c *Cache) Purge(ctx context.Context, tags ...string) { c.PurgeReport(ctx, tags...) }

// PurgeResult says how far a purge reached.
type PurgeResult struct {
	// Tags are the valid tags purged (invalid ones are skipped).
	Tags []string
	// Redis is true when Redis applied the purge at once: its entries
	// dropped and the purge broadcast to every instance.
	Redis bool
	// RedisEntries is the number of entries Redis dropped.
	RedisEntries int64
	// Instances is the number of instances subscribed to the broadcast
	// when it was sent, this one included.
	Instances int64
	// Pending is true when Redis is configured but could not take the
	// purge now: it was applied here and is replayed to Redis (and so to
	// the other instances) when Redis is back.
	Pending bool
}

// PurgeReport is Purge, saying how far the purge reached.
func (c *Cache) PurgeReport(ctx context.Context, tags ...string) PurgeResult {
	valid := tags[:0:0]
	for _, t := range tags {
		if validTag(t) {
			valid = append(valid, t)
		}
	}
	res := PurgeResult{Tags: valid}
	if len(valid) == 0 {
		return res
	}
	c.stats.purges.Add(1)
	c.purgeLocal(valid)
	if c.rdb == nil {
		return res
	}
	if c.redisUp() {
		var err error
		if res.RedisEntries, res.Instances, err = c.redisPurge(ctx, valid); err == nil {
			res.Redis = true
			return res
		}
	}
	c.addPending(valid)
	res.Pending = true
	return res
}
