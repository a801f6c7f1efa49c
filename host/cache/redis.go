package cache

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions parses a redis:// URL and sets the short timeouts the
// cache's breaker relies on: no retries, one dial attempt, and read, write
// and pool waits bounded by timeout (50 ms when zero).
func RedisOptions(url string, timeout time.Duration) (*redis.Options, error) {
	opt, err := parseSingleURL(url)
	if err != nil {
		return nil, err
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
var storeScript = redis.NewScript(storeSrc)

const storeSrc = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1`

// purgeScript deletes the members of each tag set and the sets. KEYS: the
// tag sets of one shard (so one slot, as are their members). It returns
// the number of entries deleted (a set may list entries already gone).
var purgeScript = redis.NewScript(purgeSrc)

const purgeSrc = `
local n = 0
for i = 1, #KEYS do
  local m = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #m, 500 do
    n = n + redis.call('DEL', unpack(m, j, math.min(j + 499, #m)))
  end
  redis.call('DEL', KEYS[i])
end
return n`

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
	err := c.healthy(ctx)
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

// healthy checks Redis for the breaker: a ping; on a cluster, a reload of
// the slot map (in the background, for the next probe: after a failover
// go-redis would otherwise keep the lost primary's slots on it for up to
// 10 s) and a ping of every primary the map names now.
//
// It also loads the cache's scripts on each primary, so that the first
// store or purge after a start or a failover does not pay for a NOSCRIPT
// reply and a second round trip (64 of them for a purge on a cluster).
func (c *Cache) healthy(ctx context.Context) error {
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return pingLoad(ctx, n) })
	}
	return pingLoad(ctx, c.rdb)
}

// pingLoad pings rdb and loads storeScript and purgeScript in the same
// round trip; only the ping decides health (a failed load costs a NOSCRIPT
// reply later, nothing more).
func pingLoad(ctx context.Context, rdb redis.Cmdable) error {
	var ping *redis.StatusCmd
	_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ping = p.Ping(ctx)
		// Not Script.Load: in a pipeline it would set the script's hash
		// from a reply not read yet.
		p.ScriptLoad(ctx, storeSrc)
		p.ScriptLoad(ctx, purgeSrc)
		return nil
	})
	return ping.Err()
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
		err := c.healthy(ctx)
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
	b, err := c.rdb.Get(ctx, c.redisKey(key)).Bytes()
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
	shard := c.shardOf(j.key)
	keys := make([]string, 0, 1+len(j.e.Tags))
	keys = append(keys, c.redisKey(j.key))
	for _, t := range j.e.Tags {
		keys = append(keys, c.tagKey(shard, t))
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
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*c.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	entries, instances, err = c.purgeAndPublish(ctx, tags)
	c.noteWait(time.Since(start))
	c.redisErr(err)
	return entries, instances, err
}

// purgeAndPublish deletes the entries of tags in every shard, then
// publishes the purge: the entries deleted and the instances reached.
func (c *Cache) purgeAndPublish(ctx context.Context, tags []string) (entries, instances int64, err error) {
	if entries, err = c.purgeShards(ctx, tags); err != nil {
		return entries, 0, err
	}
	instances, err = c.publish(ctx, encodePurge(c.instance, tags))
	return entries, instances, err
}

// purgeShards runs purgeScript once per shard, in one pipeline (on a
// cluster, go-redis splits it into one pipeline per primary). A server
// that has not seen the script yet gets it in full.
func (c *Cache) purgeShards(ctx context.Context, tags []string) (int64, error) {
	keys := make([][]string, len(c.shards))
	for s := range c.shards {
		keys[s] = make([]string, len(tags))
		for i, t := range tags {
			keys[s][i] = c.tagKey(s, t)
		}
	}
	run := func(full bool) ([]*redis.Cmd, error) {
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(keys))
		for s, k := range keys {
			if full {
				cmds[s] = purgeScript.Eval(ctx, pipe, k)
			} else {
				cmds[s] = purgeScript.EvalSha(ctx, pipe, k)
			}
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run(false)
	if err != nil {
		noScript := false
		for _, cmd := range cmds {
			if e := cmd.Err(); e != nil && redis.HasErrorPrefix(e, "NOSCRIPT") {
				noScript = true
			}
		}
		if noScript {
			cmds, err = run(true)
		}
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for _, cmd := range cmds {
		v, err := cmd.Int64()
		if err != nil {
			return n, err
		}
		n += v
	}
	return n, nil
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
		if _, _, err := c.purgeAndPublish(ctx, tags[i:min(i+256, len(tags))]); err != nil {
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

// dropAll unlinks every key of this cache's key space, on each primary of
// a cluster.
func (c *Cache) dropAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return c.dropNode(ctx, node)
		})
	}
	return c.dropNode(ctx, c.rdb)
}

// dropNode scans one server and unlinks the keys found, one command a key
// (keys of different slots never share a command), 500 to a pipeline.
func (c *Cache) dropNode(ctx context.Context, rdb redis.Cmdable) error {
	iter := rdb.Scan(ctx, 0, c.cfg.Prefix+":"+FormatVersion+":*", 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Unlink(ctx, k)
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// Purge notices travel on sharded pub/sub (SPUBLISH/SSUBSCRIBE) on a
// cluster whose servers know it (Redis 7 and later): the channel then
// lives on the primary of its slot and its replicas instead of being
// broadcast over the whole cluster bus. On a single server, a Sentinel
// primary, an older cluster or with Config.ClassicPubSub they use
// PUBLISH/SUBSCRIBE.
const (
	psUnknown int32 = iota
	psClassic
	psSharded
)

// pubsubMode returns how purge notices travel, asking a cluster once
// whether it has SPUBLISH.
func (c *Cache) pubsubMode(ctx context.Context) (int32, error) {
	if m := c.psMode.Load(); m != psUnknown {
		return m, nil
	}
	if _, ok := c.rdb.(*redis.ClusterClient); !ok || c.cfg.ClassicPubSub {
		c.psMode.Store(psClassic)
		return psClassic, nil
	}
	v, err := c.rdb.Do(ctx, "COMMAND", "INFO", "SPUBLISH").Slice()
	if err != nil {
		return psUnknown, err
	}
	m := psClassic
	if len(v) == 1 && v[0] != nil {
		m = psSharded
	}
	c.psMode.CompareAndSwap(psUnknown, m)
	return c.psMode.Load(), nil
}

// publish sends a purge notice: the number of instances that heard it.
// With sharded pub/sub that is every instance (all subscribe on the node
// that owns the channel's slot); with PUBLISH on a cluster, only those
// subscribed through the node that took the PUBLISH, though the notice
// reaches all of them over the cluster bus.
func (c *Cache) publish(ctx context.Context, msg string) (int64, error) {
	m, err := c.pubsubMode(ctx)
	if err != nil {
		return 0, err
	}
	if m == psSharded {
		return c.rdb.SPublish(ctx, c.channel, msg).Result()
	}
	return c.rdb.Publish(ctx, c.channel, msg).Result()
}

// subscribe applies purges broadcast by other instances. After a
// reconnection (purges may have been missed) the in-process tier is
// emptied; it refills from Redis. A sharded subscription the server ends
// (its slot moved to another node) is made again.
func (c *Cache) subscribe() {
	defer c.wg.Done()
	subscribed := 0
	for c.ctx.Err() == nil {
		m, err := c.pubsubMode(c.ctx)
		if err != nil {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(c.cfg.ProbeInterval):
			}
			continue
		}
		var ps *redis.PubSub
		if m == psSharded {
			ps = c.rdb.SSubscribe(c.ctx, c.channel)
		} else {
			ps = c.rdb.Subscribe(c.ctx, c.channel)
		}
		c.listen(ps, &subscribed)
		ps.Close()
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.cfg.ProbeInterval):
		}
	}
}

// listen reads one subscription until the cache closes or the server ends
// the subscription.
func (c *Cache) listen(ps *redis.PubSub, subscribed *int) {
	ch := ps.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(time.Second))
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
				switch m.Kind {
				case "subscribe", "ssubscribe":
					*subscribed++
					if *subscribed > 1 {
						c.local.InvalidateAll()
					}
				case "sunsubscribe":
					return
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
