package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions parses a redis:// URL and sets the short timeouts the
// cache's breaker relies on: no retries, one dial attempt, and read, write
// and pool waits bounded by timeout (50 ms when zero).
func RedisOptions(url string, timeout time.Duration) (*redis.Options, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("cache: redis url: %w", err)
	}
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	opt.DialTimeout = 4 * timeout
	opt.DialerRetries = 1
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.MaxRetries = -1
	opt.ContextTimeoutEnabled = true
	return opt, nil
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// SilenceRedisLogs stops go-redis's own logging, which repeats a line for
// every failed dial while Redis is down; the cache logs each state change
// once instead. It sets go-redis's process-wide logger.
func SilenceRedisLogs() { redis.SetLogger(quietLogger{}) }

// storeScript stores an entry and adds its key to each tag's set, keeping
// every set alive at least as long as its longest-lived member.
// KEYS[1] entry key, KEYS[2..] tag sets; ARGV[1] value, ARGV[2] ttl ms.
var storeScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1`)

// purgeScript deletes the members of each tag set and the sets, then
// publishes the purge. KEYS: tag sets; ARGV[1] channel, ARGV[2] message.
// It returns the number of entries deleted and of subscribers reached.
var purgeScript = redis.NewScript(`
local n = 0
for i = 1, #KEYS do
  local m = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #m, 500 do
    redis.call('DEL', unpack(m, j, math.min(j + 499, #m)))
  end
  n = n + #m
  redis.call('DEL', KEYS[i])
end
local subs = redis.call('PUBLISH', ARGV[1], ARGV[2])
return {n, subs}`)

type writeJob struct {
	key string
	e   *Entry
	seq uint64
}

const (
	writeQueue   = 4096
	writeWorkers = 2
	maxPending   = 4096
)

func (c *Cache) startRedis() {
	c.writes = make(chan writeJob, writeQueue)
	ctx, cancel := context.WithTimeout(c.ctx, 4*c.cfg.RedisTimeout)
	err := c.rdb.Ping(ctx).Err()
	cancel()
	if err != nil {
		c.trip(err)
	} else {
		c.log.Info("cache: redis tier connected")
	}
	for range writeWorkers {
		c.wg.Add(1)
		go c.writer()
	}
	c.wg.Add(1)
	go c.subscribe()
}

func (c *Cache) redisUp() bool { return c.rdb != nil && !c.redisOut.Load() }

// redisErr records the outcome of one Redis call for the breaker.
func (c *Cache) redisErr(err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		c.fails.Store(0)
		return
	}
	c.stats.redisErrors.Add(1)
	if int(c.fails.Add(1)) >= c.cfg.BreakerFailures {
		c.trip(err)
	}
}

// trip opens the breaker: one warning, then a prober closes it again.
func (c *Cache) trip(err error) {
	if !c.redisOut.CompareAndSwap(false, true) {
		return
	}
	c.log.Warn("cache: redis unavailable, serving from the in-process tier only", "err", err)
	if c.obs != nil {
		c.obs.RedisState(false)
	}
	c.wg.Add(1)
	go c.probe()
}

func (c *Cache) probe() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, 4*c.cfg.RedisTimeout)
		err := c.rdb.Ping(ctx).Err()
		if err == nil {
			err = c.replayPending(ctx)
		}
		cancel()
		if err != nil {
			continue
		}
		c.fails.Store(0)
		c.redisOut.Store(false)
		c.log.Info("cache: redis available again")
		if c.obs != nil {
			c.obs.RedisState(true)
		}
		return
	}
}

// redisGet reads key; nil on a miss, an error, a breaker that is open or
// an undecodable value.
func (c *Cache) redisGet(ctx context.Context, key string) *Entry {
	if !c.redisUp() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	b, err := c.rdb.Get(ctx, key).Bytes()
	c.noteWait(time.Since(start))
	c.redisErr(err)
	if err != nil {
		return nil
	}
	e, err := decodeEntry(b)
	if err != nil {
		c.stats.redisDecodeErrors.Add(1)
		return nil
	}
	return e
}

func (c *Cache) writer() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case j := <-c.writes:
			c.write(j)
		}
	}
}

func (c *Cache) write(j writeJob) {
	if !c.redisUp() || !c.validSeq(j.e.Tags, j.seq) {
		return
	}
	life := j.e.remaining(time.Now())
	if life < time.Millisecond {
		return
	}
	keys := make([]string, 0, 1+len(j.e.Tags))
	keys = append(keys, j.key)
	for _, t := range j.e.Tags {
		keys = append(keys, c.tagKey(t))
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.RedisTimeout)
	err := storeScript.Run(ctx, c.rdb, keys, encodeEntry(j.e), strconv.FormatInt(life.Milliseconds(), 10)).Err()
	cancel()
	if c.ctx.Err() == nil {
		c.redisErr(err)
	}
}

// redisPurge deletes the tagged keys from Redis and broadcasts the purge:
// how many entries it deleted and how many instances heard it.
func (c *Cache) redisPurge(ctx context.Context, tags []string) (entries, instances int64, err error) {
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = c.tagKey(t)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*c.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	v, err := purgeScript.Run(ctx, c.rdb, keys, c.channel, encodePurge(c.instance, tags)).Int64Slice()
	c.noteWait(time.Since(start))
	c.redisErr(err)
	if err == nil && len(v) == 2 {
		entries, instances = v[0], v[1]
	}
	return entries, instances, err
}

// noteWait records how long a request waited on Redis.
func (c *Cache) noteWait(d time.Duration) {
	for {
		cur := c.stats.redisSlowest.Load()
		if int64(d) <= cur || c.stats.redisSlowest.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

func (c *Cache) addPending(tags []string) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	for _, t := range tags {
		if len(c.pending) >= maxPending {
			c.pendingOverflow = true
			return
		}
		c.pending[t] = struct{}{}
	}
}

// replayPending applies to Redis the purges made while it was away. When
// too many piled up to remember, every entry of this cache's key space is
// dropped instead.
func (c *Cache) replayPending(ctx context.Context) error {
	c.pendingMu.Lock()
	tags := make([]string, 0, len(c.pending))
	for t := range c.pending {
		tags = append(tags, t)
	}
	overflow := c.pendingOverflow
	c.pendingMu.Unlock()
	if overflow {
		if err := c.dropAll(ctx); err != nil {
			return err
		}
	}
	for i := 0; i < len(tags); i += 256 {
		chunk := tags[i:min(i+256, len(tags))]
		keys := make([]string, len(chunk))
		for k, t := range chunk {
			keys[k] = c.tagKey(t)
		}
		if err := purgeScript.Run(ctx, c.rdb, keys, c.channel, encodePurge(c.instance, chunk)).Err(); err != nil {
			return err
		}
	}
	c.pendingMu.Lock()
	for _, t := range tags {
		delete(c.pending, t)
	}
	if overflow {
		c.pendingOverflow = false
	}
	c.pendingMu.Unlock()
	return nil
}

func (c *Cache) dropAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	iter := c.rdb.Scan(ctx, 0, c.cfg.Prefix+":"+FormatVersion+":*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := c.rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}

// subscribe applies purges broadcast by other instances. After a
// reconnection (purges may have been missed) the in-process tier is
// emptied; it refills from Redis.
func (c *Cache) subscribe() {
	defer c.wg.Done()
	ps := c.rdb.Subscribe(c.ctx, c.channel)
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(time.Second))
	subscribed := 0
	for {
		select {
		case <-c.ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				subscribed++
				if subscribed > 1 {
					c.local.InvalidateAll()
				}
			case *redis.Message:
				inst, tags, ok := decodePurge(m.Payload)
				if !ok || inst == c.instance {
					continue
				}
				c.stats.purgesReceived.Add(1)
				c.purgeLocal(tags)
			}
		}
	}
}
