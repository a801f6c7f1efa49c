package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is what the limiter does for limited keys while Redis cannot be
// reached.
type Mode string

const (
	// ModeClosed refuses calls on limited keys (ErrLimiterDown) until
	// Redis answers again: no overspend, no availability.
	ModeClosed Mode = "closed"
	// ModeLocal enforces each limit on every instance alone, each taking
	// 1/Replicas of what was left of the budget when Redis was last seen
	// (and of the rpm and tpm): with Replicas set to the number of
	// instances, the overspend is at most one reservation per instance;
	// with fewer, (instances/Replicas − 1) times what was left.
	ModeLocal Mode = "local"
)

// ErrLimiterDown: Redis is unreachable and the mode is ModeClosed.
var ErrLimiterDown = errors.New("keys: the shared limits are unavailable")

// LimitError is a refused reservation.
type LimitError struct {
	// Limit is "budget", "rpm" or "tpm".
	Limit string
	// RetryAfter is when trying again may succeed (0 for a budget:
	// not before the period ends or the budget is raised).
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return "keys: over the key's " + e.Limit + " limit" }

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	// Redis holds the counters shared by every instance; nil: this
	// instance is the only one, and counts in process.
	Redis redis.UniversalClient
	// Mode while Redis is unreachable (default ModeClosed).
	Mode Mode
	// Replicas is how many instances share the limits in ModeLocal
	// (default 1).
	Replicas int
	// ReservationTTL drops a reservation never settled (an instance that
	// died mid-call) after this long; default 10 minutes. Make it longer
	// than the longest call.
	ReservationTTL time.Duration
	// Spent is the ledger's spend of a key since from, to (re)load the
	// shared figure when Redis has none (first use, a restarted Redis).
	Spent func(ctx context.Context, keyID string, from, to time.Time) (Micros, error)
	// Flush makes the ledger's pending rows durable, before the shared
	// figures of keys charged without Redis are reloaded from it.
	Flush func(ctx context.Context) error
	// RetryRedis is how long, after Redis failed, calls go straight to
	// the fallback before Redis is tried again (default 1 s).
	RetryRedis time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limiter takes and settles reservations against keys' limits. It is safe
// for concurrent use.
type Limiter struct {
	cfg    LimiterConfig
	local  localLimits
	downAt atomic.Int64 // unix nanos of the last Redis failure, 0 when up
	// dirty are the key periods whose shared figure missed a charge
	// (charged locally, or a settle that did not reach Redis): reloaded
	// from the ledger once Redis is back.
	dirtyMu sync.Mutex
	dirty   map[string]dirtyKey
	// seen is the last shared figure (spent + held) each key period had,
	// the base of local allowances.
	seen sync.Map // periodKey -> Micros
}

type dirtyKey struct {
	keyID string
	start time.Time
}

// NewLimiter returns a limiter over cfg.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.Mode == "" {
		cfg.Mode = ModeClosed
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.ReservationTTL <= 0 {
		cfg.ReservationTTL = 10 * time.Minute
	}
	if cfg.RetryRedis <= 0 {
		cfg.RetryRedis = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Redis == nil {
		// One instance: the local limits are the shared ones.
		cfg.Replicas = 1
	}
	l := &Limiter{cfg: cfg, dirty: map[string]dirtyKey{}}
	l.local.keys = map[string]*localKey{}
	return l
}

// Reservation is a call's claim on a key's limits, settled once by
// Settle.
type Reservation struct {
	keyID       string
	id          string
	cost        Micros
	tokens      int
	minute      int64
	periodStart time.Time
	periodEnd   time.Time
	budget      bool
	local       bool // taken from the local limits
	settled     atomic.Bool
}

// Cost is the reserved amount.
func (r *Reservation) Cost() Micros { return r.cost }

// Local reports whether the reservation was taken without Redis.
func (r *Reservation) Local() bool { return r.local }

// Unlimited is the reservation of a call on a key with no limits:
// settling it touches no counter.
func (l *Limiter) Unlimited(k *Key) *Reservation { return &Reservation{keyID: k.ID} }

// Reserve claims cost and tokens on k's limits before a call: a
// *LimitError when a limit would be exceeded, ErrLimiterDown when Redis
// is down in ModeClosed. A key with no limits gets a reservation that
// touches nothing.
func (l *Limiter) Reserve(ctx context.Context, k *Key, cost Micros, tokens int) (*Reservation, error) {
	now := l.cfg.Now()
	r := &Reservation{keyID: k.ID, cost: cost, tokens: tokens, minute: now.Unix() / 60, budget: k.Budget > 0}
	if !k.Limited() {
		return r, nil
	}
	period := k.BudgetPeriod
	if !period.Valid() {
		period = PeriodMonth
	}
	r.periodStart = period.Start(now)
	r.periodEnd = period.End(r.periodStart)
	if l.cfg.Redis == nil || l.redisResting(now) {
		return l.reserveLocal(ctx, k, r, now)
	}
	err := l.reserveShared(ctx, k, r, now)
	if err == nil {
		l.reconcile(ctx)
		return r, nil
	}
	var le *LimitError
	if errors.As(err, &le) {
		return nil, err
	}
	l.redisFailed(l.cfg.Now())
	return l.reserveLocal(ctx, k, r, now)
}

// Settle replaces r's reservation with the call's actual cost and tokens
// (zero for a call that failed before the provider answered). Settling
// twice is a no-op.
func (l *Limiter) Settle(ctx context.Context, r *Reservation, cost Micros, tokens int) {
	if r == nil || !r.settled.CompareAndSwap(false, true) || r.periodStart.IsZero() {
		return
	}
	if r.local {
		l.settleLocal(r, cost, tokens)
		return
	}
	if err := l.settleShared(ctx, r, cost, tokens); err != nil {
		l.redisFailed(l.cfg.Now())
		l.markDirty(r.keyID, r.periodStart)
	}
}

// redisResting reports whether Redis failed less than RetryRedis ago.
func (l *Limiter) redisResting(now time.Time) bool {
	at := l.downAt.Load()
	return at != 0 && now.UnixNano()-at < int64(l.cfg.RetryRedis)
}

func (l *Limiter) redisFailed(now time.Time) { l.downAt.Store(now.UnixNano()) }

// The shared counters of a key live under one hash tag, so that on a
// Redis Cluster each script runs on one node.
func sharedKeys(keyID string, periodStart time.Time, minute int64) []string {
	tag := "wg:vk:{" + keyID + "}:"
	ps := strconv.FormatInt(periodStart.Unix(), 10)
	m := strconv.FormatInt(minute, 10)
	return []string{tag + "spent:" + ps, tag + "held:" + ps, tag + "exp:" + ps, tag + "rpm:" + m, tag + "tpm:" + m}
}

// reserveScript checks every limit, then takes the reservation: spent +
// held + cost within the budget, requests and tokens of this minute
// within rpm and tpm. Reservations past their expiry are dropped first.
// Replies {1, spent, held} taken; {-1|-2|-4, spent, held} refused for
// budget, rpm, tpm; {-3} when the spent figure must be loaded first.
var reserveScript = redis.NewScript(`
local budget = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local spent, held = 0, 0
if budget > 0 then
  local s = redis.call('GET', KEYS[1])
  if not s then return {-3, 0, 0} end
  spent = tonumber(s)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[6], 'LIMIT', 0, 32)
  for _, id in ipairs(stale) do
    local a = redis.call('HGET', KEYS[2], id)
    if a then
      redis.call('HINCRBY', KEYS[2], '_total', -tonumber(a))
      redis.call('HDEL', KEYS[2], id)
    end
    redis.call('ZREM', KEYS[3], id)
  end
  held = tonumber(redis.call('HGET', KEYS[2], '_total') or '0')
  if spent + held + cost > budget then return {-1, spent, held} end
end
local rpm = tonumber(ARGV[3])
if rpm > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') + 1 > rpm then return {-2, spent, held} end
local tpm = tonumber(ARGV[4])
if tpm > 0 and tonumber(redis.call('GET', KEYS[5]) or '0') + tonumber(ARGV[5]) > tpm then return {-4, spent, held} end
if rpm > 0 then
  redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], 120)
end
if tpm > 0 then
  redis.call('INCRBY', KEYS[5], ARGV[5])
  redis.call('EXPIRE', KEYS[5], 120)
end
if budget > 0 then
  redis.call('HSET', KEYS[2], ARGV[8], cost)
  redis.call('HINCRBY', KEYS[2], '_total', cost)
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[8])
  redis.call('EXPIRE', KEYS[2], ARGV[9])
  redis.call('EXPIRE', KEYS[3], ARGV[9])
end
return {1, spent, held + cost}
`)

// settleScript drops a reservation and adds the actual cost to the spent
// figure (when there is one: a missing figure is reloaded from the
// ledger), and corrects the minute's tokens by actual − reserved.
var settleScript = redis.NewScript(`
if ARGV[1] ~= '' then
  local a = redis.call('HGET', KEYS[2], ARGV[1])
  if a then
    redis.call('HINCRBY', KEYS[2], '_total', -tonumber(a))
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[2]) end
end
if tonumber(ARGV[3]) ~= 0 and redis.call('EXISTS', KEYS[5]) == 1 then redis.call('INCRBY', KEYS[5], ARGV[3]) end
return 1
`)

func newReservationID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func periodTTL(now, end time.Time) int64 {
	ttl := int64(end.Sub(now)/time.Second) + 86400
	if ttl > 40*86400 {
		// The lifetime figure is reloaded from the ledger now and then.
		ttl = 40 * 86400
	}
	return ttl
}

func (l *Limiter) reserveShared(ctx context.Context, k *Key, r *Reservation, now time.Time) error {
	if r.budget {
		r.id = newReservationID()
	}
	keys := sharedKeys(k.ID, r.periodStart, r.minute)
	args := []any{int64(k.Budget), int64(r.cost), k.RPM, k.TPM, r.tokens, now.UnixMilli(),
		now.Add(l.cfg.ReservationTTL).UnixMilli(), r.id, periodTTL(now, r.periodEnd)}
	for attempt := 0; ; attempt++ {
		res, err := reserveScript.Run(ctx, l.cfg.Redis, keys, args...).Int64Slice()
		if err != nil {
			return fmt.Errorf("keys: reserve: %w", err)
		}
		if len(res) != 3 {
			return fmt.Errorf("keys: reserve: reply %v", res)
		}
		switch res[0] {
		case 1:
			l.seen.Store(periodKey(k.ID, r.periodStart), Micros(res[1]+res[2]))
			return nil
		case -3:
			if attempt > 0 || l.cfg.Spent == nil {
				return errors.New("keys: reserve: the spent figure could not be loaded")
			}
			spent, err := l.cfg.Spent(ctx, k.ID, r.periodStart, r.periodEnd)
			if err != nil {
				return fmt.Errorf("keys: load spend: %w", err)
			}
			if err := l.cfg.Redis.SetNX(ctx, keys[0], int64(spent), time.Duration(periodTTL(now, r.periodEnd))*time.Second).Err(); err != nil {
				return fmt.Errorf("keys: store spend: %w", err)
			}
			continue
		}
		l.seen.Store(periodKey(k.ID, r.periodStart), Micros(res[1]+res[2]))
		return refusal(res[0], now)
	}
}

func refusal(code int64, now time.Time) *LimitError {
	untilMinute := time.Duration(60-now.Unix()%60) * time.Second
	switch code {
	case -2:
		return &LimitError{Limit: "rpm", RetryAfter: untilMinute}
	case -4:
		return &LimitError{Limit: "tpm", RetryAfter: untilMinute}
	}
	return &LimitError{Limit: "budget"}
}

func (l *Limiter) settleShared(ctx context.Context, r *Reservation, cost Micros, tokens int) error {
	keys := sharedKeys(r.keyID, r.periodStart, r.minute)
	return settleScript.Run(ctx, l.cfg.Redis, keys, r.id, int64(cost), tokens-r.tokens).Err()
}

func periodKey(keyID string, start time.Time) string {
	return keyID + "@" + strconv.FormatInt(start.Unix(), 10)
}

func (l *Limiter) markDirty(keyID string, start time.Time) {
	l.dirtyMu.Lock()
	l.dirty[periodKey(keyID, start)] = dirtyKey{keyID: keyID, start: start}
	l.dirtyMu.Unlock()
}

// reconcile runs once Redis answers again after charges it missed: the
// ledger's pending rows are made durable, the shared figures of those
// key periods dropped (the next reservation reloads them from the
// ledger), and the local limits forgotten.
func (l *Limiter) reconcile(ctx context.Context) {
	l.dirtyMu.Lock()
	if len(l.dirty) == 0 {
		l.dirtyMu.Unlock()
		return
	}
	dirty := l.dirty
	l.dirty = map[string]dirtyKey{}
	l.dirtyMu.Unlock()
	if l.cfg.Flush != nil {
		if err := l.cfg.Flush(ctx); err != nil {
			l.putBackDirty(dirty)
			return
		}
	}
	for pk, d := range dirty {
		spent := sharedKeys(d.keyID, d.start, 0)[0]
		if err := l.cfg.Redis.Del(ctx, spent).Err(); err != nil {
			l.putBackDirty(map[string]dirtyKey{pk: d})
			continue
		}
		l.local.forget(pk)
	}
}

func (l *Limiter) putBackDirty(m map[string]dirtyKey) {
	l.dirtyMu.Lock()
	for k, v := range m {
		l.dirty[k] = v
	}
	l.dirtyMu.Unlock()
}

// localLimits are one instance's own counters: every limit when there is
// no Redis, a share of each while Redis is down in ModeLocal.
type localLimits struct {
	mu   sync.Mutex
	keys map[string]*localKey
}

type localKey struct {
	budget    Micros // the key's budget when allowance was set
	allowance Micros // what this instance may spend of the period
	used      Micros // held and settled here
	minute    int64
	requests  int
	tokens    int
}

func (ll *localLimits) forget(pk string) {
	ll.mu.Lock()
	delete(ll.keys, pk)
	ll.mu.Unlock()
}

func (l *Limiter) reserveLocal(ctx context.Context, k *Key, r *Reservation, now time.Time) (*Reservation, error) {
	if l.cfg.Redis != nil && l.cfg.Mode != ModeLocal {
		return nil, ErrLimiterDown
	}
	pk := periodKey(k.ID, r.periodStart)
	l.local.mu.Lock()
	lk := l.local.keys[pk]
	l.local.mu.Unlock()
	if lk == nil {
		// The base is the larger of the last shared figure seen and the
		// ledger's (what other instances settled before Redis went).
		var base Micros
		if v, ok := l.seen.Load(pk); ok {
			base = v.(Micros)
		}
		if k.Budget > 0 && l.cfg.Spent != nil {
			spent, err := l.cfg.Spent(ctx, k.ID, r.periodStart, r.periodEnd)
			if err != nil {
				return nil, ErrLimiterDown
			}
			base = max(base, spent)
		}
		allowance := (k.Budget - base) / Micros(l.cfg.Replicas)
		l.local.mu.Lock()
		if lk = l.local.keys[pk]; lk == nil {
			lk = &localKey{budget: k.Budget, allowance: max(allowance, 0)}
			l.local.keys[pk] = lk
		}
		l.local.mu.Unlock()
	}
	l.local.mu.Lock()
	defer l.local.mu.Unlock()
	if lk.minute != r.minute {
		lk.minute, lk.requests, lk.tokens = r.minute, 0, 0
	}
	if lk.budget != k.Budget {
		// The operator changed the budget: so does this share of it.
		lk.allowance = max(lk.allowance+(k.Budget-lk.budget)/Micros(l.cfg.Replicas), 0)
		lk.budget = k.Budget
	}
	share := func(limit int) int { return (limit + l.cfg.Replicas - 1) / l.cfg.Replicas }
	switch {
	case k.Budget > 0 && lk.used+r.cost > lk.allowance:
		return nil, refusal(-1, now)
	case k.RPM > 0 && lk.requests+1 > share(k.RPM):
		return nil, refusal(-2, now)
	case k.TPM > 0 && lk.tokens+r.tokens > share(k.TPM):
		return nil, refusal(-4, now)
	}
	lk.requests++
	lk.tokens += r.tokens
	if k.Budget > 0 {
		lk.used += r.cost
	}
	r.local = true
	if l.cfg.Redis != nil {
		l.markDirty(k.ID, r.periodStart)
	}
	return r, nil
}

func (l *Limiter) settleLocal(r *Reservation, cost Micros, tokens int) {
	pk := periodKey(r.keyID, r.periodStart)
	l.local.mu.Lock()
	defer l.local.mu.Unlock()
	lk := l.local.keys[pk]
	if lk == nil {
		return
	}
	if r.budget {
		lk.used += cost - r.cost
	}
	if lk.minute == r.minute {
		lk.tokens += tokens - r.tokens
	}
}
