package app

import (
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/cache"
)

// startCache builds the response cache: in-process only when REDIS_URL is
// empty (one info line), otherwise with the Redis tier (an unreachable
// Redis is one warning; the cache recovers by itself). Zero sizes take the
// cache's defaults; obs may be nil.
func startCache(sc Config, obs cache.Observer, log *slog.Logger) (*cache.Cache, func(), error) {
	if sc.CacheLocalBytes < 0 || sc.CacheMaxEntryBytes < 0 {
		return nil, nil, fmt.Errorf("%w: cache sizes must be positive", ErrUsage)
	}
	redisURL := sc.RedisURL
	cfg := cache.Config{Logger: log, Observer: obs,
		MaxLocalBytes: uint64(sc.CacheLocalBytes), MaxEntryBytes: int(sc.CacheMaxEntryBytes)}
	var rdb *redis.Client
	if redisURL == "" {
		log.Info("cache: REDIS_URL unset, in-process cache only")
	} else {
		opt, err := cache.RedisOptions(redisURL, 0)
		if err != nil {
			return nil, nil, err
		}
		cache.SilenceRedisLogs()
		rdb = redis.NewClient(opt)
		cfg.Redis = rdb
	}
	c, err := cache.New(cfg)
	if err != nil {
		if rdb != nil {
			rdb.Close()
		}
		return nil, nil, err
	}
	return c, func() {
		c.Close()
		if rdb != nil {
			rdb.Close()
		}
	}, nil
}
