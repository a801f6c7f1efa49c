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
	// WaitReplicas, when positive, makes every reservation wait (WAIT)
	// until that many replicas of its primary have it, at most
	// WaitTimeout (default 50 ms): a failover then keeps the
	// reservations that were acknowledged. Settled amounts are not
	// waited for: after any Redis failure, the key periods settled in the
	// last RecentWindow are reloaded from the ledger instead.
	WaitReplicas int
	WaitTimeout  time.Duration
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
	// settles queue the shared settles for the settlers; pending counts
	// those not yet sent.
	settles chan settleOp
	pending atomic.Int64
	closeMu sync.RWMutex
	closed  bool
	// recent are the key periods settled in the last recentWindow: the
	// writes a failover may lose, reloaded from the ledger after one.
	retryMu      sync.Mutex
	retry        []settleOp
	retrying     bool
	recentMu     sync.Mutex
	recent       map[string]recentKey
	unreplicated atomic.Int64
}

type recentKey struct {
	dirtyKey
	at time.Time
}

// recentWindow is longer than a write takes to reach a replica.
const recentWindow = 10 * time.Second

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
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 50 * time.Millisecond
	}
	if cfg.Redis == nil {
		// One instance: the local limits are the shared ones.
		cfg.Replicas = 1
	}
	l := &Limiter{cfg: cfg, dirty: map[string]dirtyKey{}, recent: map[string]recentKey{}}
	l.local.keys = map[string]*localKey{}
	if cfg.Redis != nil {
		l.settles = make(chan settleOp, 4096)
		for range settleWorkers {
			go l.settler()
		}
	}
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
	if r.id != "" {
		// The script may have run with its reply lost: release what it
		// may hold (a no-op when it did not run).
		release := &Reservation{keyID: r.keyID, id: r.id, cost: r.cost, tokens: r.tokens, minute: r.minute,
			periodStart: r.periodStart, periodEnd: r.periodEnd, budget: r.budget}
		l.retryLater([]settleOp{{r: release}})
		r.id = ""
	}
	return l.reserveLocal(ctx, k, r, now)
}

// Settle replaces r's reservation with the call's actual cost and tokens
// (zero for a call that failed before the provider answered), in the
// background when it goes to Redis (Wait waits for it). Settling twice is
// a no-op. Until a settle lands its reservation holds the estimate, which
// is never less than the actual: a late settle can only refuse a call,
// never let one overspend.
func (l *Limiter) Settle(ctx context.Context, r *Reservation, cost Micros, tokens int) {
	if r == nil || !r.settled.CompareAndSwap(false, true) || r.periodStart.IsZero() {
		return
	}
	if r.local {
		l.settleLocal(r, cost, tokens)
		return
	}
	l.pending.Add(1)
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if !l.closed {
		select {
		case l.settles <- settleOp{r: r, cost: cost, tokens: tokens}:
			return
		default:
		}
	}
	// Closed, or the queue is full: settle on the caller's time.
	l.settleBatch(ctx, []settleOp{{r: r, cost: cost, tokens: tokens}})
}

// settleOp is a settle waiting for a settler.
type settleOp struct {
	r      *Reservation
	cost   Micros
	tokens int
	since  time.Time // first failed attempt
}

// settleWorkers settle in the background, each sending what has queued
// up in one pipeline: a call does not wait for its settle, and a busy
// instance pays one round trip for many.
const settleWorkers = 2

func (l *Limiter) settler() {
	batch := make([]settleOp, 0, 128)
	for op := range l.settles {
		batch = append(batch[:0], op)
	fill:
		for len(batch) < cap(batch) {
			select {
			case op, ok := <-l.settles:
				if !ok {
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.settleBatch(ctx, batch)
		cancel()
	}
}

// settleBatch runs the settles in one pipeline (go-redis splits it by
// node on a cluster). A settle that fails leaves its key period dirty.
func (l *Limiter) settleBatch(ctx context.Context, ops []settleOp) {
	defer l.pending.Add(-int64(len(ops)))
	pipe := l.cfg.Redis.Pipeline()
	cmds := make([]*redis.Cmd, len(ops))
	for i, op := range ops {
		cmds[i] = settleScript.EvalSha(ctx, pipe, sharedKeys(op.r.keyID, op.r.periodStart, op.r.minute),
			op.r.id, int64(op.cost), op.tokens-op.r.tokens)
	}
	_, _ = pipe.Exec(ctx)
	var failed []settleOp
	for i, op := range ops {
		n, err := cmds[i].Int64()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			n, err = settleScript.Run(ctx, l.cfg.Redis, sharedKeys(op.r.keyID, op.r.periodStart, op.r.minute),
				op.r.id, int64(op.cost), op.tokens-op.r.tokens).Int64() // loads the script
		}
		if err != nil {
			l.redisFailed(l.cfg.Now())
			l.markDirty(op.r.keyID, op.r.periodStart)
			failed = append(failed, op)
			continue
		}
		if n == 0 && op.r.budget {
			l.markDirty(op.r.keyID, op.r.periodStart)
		}
		l.settled(op.r)
	}
	if len(failed) > 0 {
		l.retryLater(failed)
	}
}

// retryLater keeps settles that did not reach Redis and sends them again
// every RetryRedis, for up to ReservationTTL (after which the
// reservation has lapsed anyway).
func (l *Limiter) retryLater(ops []settleOp) {
	l.retryMu.Lock()
	defer l.retryMu.Unlock()
	now := l.cfg.Now()
	for _, op := range ops {
		if op.since.IsZero() {
			op.since = now
		}
		if now.Sub(op.since) < l.cfg.ReservationTTL && len(l.retry) < 100_000 {
			l.pending.Add(1)
			l.retry = append(l.retry, op)
		}
	}
	if !l.retrying {
		l.retrying = true
		go l.retrier()
	}
}

func (l *Limiter) retrier() {
	for {
		time.Sleep(l.cfg.RetryRedis)
		l.retryMu.Lock()
		ops := l.retry
		l.retry = nil
		if len(ops) == 0 {
			l.retrying = false
			l.retryMu.Unlock()
			return
		}
		l.retryMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for i := 0; i < len(ops); i += 128 {
			l.settleBatch(ctx, ops[i:min(i+128, len(ops))])
		}
		cancel()
	}
}

// Wait returns once every settle queued so far has been sent (or ctx
// ends).
func (l *Limiter) Wait(ctx context.Context) error {
	for l.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// Close sends the queued settles and stops the settlers. While Redis is
// away it waits at most half a second.
func (l *Limiter) Close(ctx context.Context) error {
	l.closeMu.Lock()
	if !l.closed && l.settles != nil {
		close(l.settles)
	}
	l.closed = true
	l.closeMu.Unlock()
	if l.redisResting(l.cfg.Now()) {
		// Redis is away: settles waiting to be retried are dropped after
		// a last short wait (their calls are in the ledger, their
		// reservations lapse).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
	}
	return l.Wait(ctx)
}

// redisResting reports whether Redis failed less than RetryRedis ago.
func (l *Limiter) redisResting(now time.Time) bool {
	at := l.downAt.Load()
	return at != 0 && now.UnixNano()-at < int64(l.cfg.RetryRedis)
}

// redisFailed rests Redis for RetryRedis, has a cluster's slot map read
// again, and marks the key periods settled lately dirty: a failover may
// have lost their last writes.
func (l *Limiter) redisFailed(now time.Time) {
	l.downAt.Store(now.UnixNano())
	if cc, ok := l.cfg.Redis.(*redis.ClusterClient); ok {
		// go-redis keeps sending a lost primary's slots to it until the
		// slot map is read again.
		cc.ReloadState(context.Background())
	}
	l.recentMu.Lock()
	for pk, rk := range l.recent {
		if now.Sub(rk.at) < recentWindow {
			l.markDirty(rk.keyID, rk.start)
		}
		delete(l.recent, pk)
	}
	l.recentMu.Unlock()
}

// settled remembers that the key period was written to lately.
func (l *Limiter) settled(r *Reservation) {
	now := l.cfg.Now()
	pk := periodKey(r.keyID, r.periodStart)
	l.recentMu.Lock()
	defer l.recentMu.Unlock()
	if len(l.recent) > 10_000 {
		for k, rk := range l.recent {
			if now.Sub(rk.at) >= recentWindow {
				delete(l.recent, k)
			}
		}
	}
	l.recent[pk] = recentKey{dirtyKey{r.keyID, r.periodStart}, now}
}

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
// ledger), and corrects the minute's tokens by actual − reserved. It acts
// only while the reservation is there, so a settle retried after a lost
// reply counts once; it returns 0 when the reservation is gone (settled
// already, lapsed, or lost in a failover), and the key period is then
// reloaded from the ledger.
var settleScript = redis.NewScript(`
if ARGV[1] == '' then
  if tonumber(ARGV[3]) ~= 0 and redis.call('EXISTS', KEYS[5]) == 1 then redis.call('INCRBY', KEYS[5], ARGV[3]) end
  return 1
end
local a = redis.call('HGET', KEYS[2], ARGV[1])
if not a then return 0 end
redis.call('HINCRBY', KEYS[2], '_total', -tonumber(a))
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[2]) end
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
		res, err := l.runReserve(ctx, keys, args)
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

// runReserve runs the reserve script; with WaitReplicas it is followed,
// on the same connection to the key's primary, by WAIT, so that the
// reservation is on that many replicas before the call goes ahead.
func (l *Limiter) runReserve(ctx context.Context, keys []string, args []any) ([]int64, error) {
	if l.cfg.WaitReplicas <= 0 {
		return reserveScript.Run(ctx, l.cfg.Redis, keys, args...).Int64Slice()
	}
	var node redis.Cmdable = l.cfg.Redis
	if cc, ok := l.cfg.Redis.(*redis.ClusterClient); ok {
		c, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = c
	}
	for attempt := 0; ; attempt++ {
		pipe := node.Pipeline()
		ev := reserveScript.EvalSha(ctx, pipe, keys, args...)
		w := pipe.Do(ctx, "WAIT", l.cfg.WaitReplicas, l.cfg.WaitTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx)
		if err := ev.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			if err := reserveScript.Load(ctx, node).Err(); err != nil {
				return nil, err
			}
			continue
		}
		res, err := ev.Int64Slice()
		if err != nil {
			return nil, err
		}
		if n, err := w.Int64(); err != nil || n < int64(l.cfg.WaitReplicas) {
			// The reservation stands; a failover now may lose it.
			l.unreplicated.Add(1)
		}
		return res, nil
	}
}

// Unreplicated counts reservations that WAIT did not see on
// WaitReplicas replicas in time.
func (l *Limiter) Unreplicated() int64 { return l.unreplicated.Load() }

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
