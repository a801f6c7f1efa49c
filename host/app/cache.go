package app

import (
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/cache"
)

// startCache builds the response cache: in-process only when REDIS_URL is
// empty (one info line), otherwise with the Redis tier on one server, a
// Sentinel primary or a Redis Cluster as the URL's scheme says
// (cache.ParseRedisURL; an unreachable Redis is one warning, the cache
// recovers by itself). Zero sizes take the cache's defaults; obs may be
// nil.
func startCache(sc Config, obs cache.Observer, log *slog.Logger) (*cache.Cache, func(), error) {
	if sc.CacheLocalBytes < 0 || sc.CacheMaxEntryBytes < 0 {
		return nil, nil, fmt.Errorf("%w: cache sizes must be positive", ErrUsage)
	}
	redisURL := sc.RedisURL
	cfg := cache.Config{Logger: log, Observer: obs,
		MaxLocalBytes: uint64(sc.CacheLocalBytes), MaxEntryBytes: int(sc.CacheMaxEntryBytes)}
	var rdb redis.UniversalClient
	if redisURL == "" {
		log.Info("cache: REDIS_URL unset, in-process cache only")
	} else {
		var mode cache.RedisMode
		var err error
		if rdb, mode, err = cache.OpenRedis(redisURL, 0); err != nil {
			return nil, nil, fmt.Errorf("%w: REDIS_URL: %v", ErrUsage, err)
		}
		cache.SilenceRedisLogs()
		log.Info("cache: redis tier", "mode", string(mode))
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
