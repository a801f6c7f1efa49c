package cli

import (
	"fmt"
	"log/slog"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/cache"
)

// envInt64 reads an integer variable, def when unset or not a number (the
// flag's own parsing then reports bad values given on the command line).
func envInt64(getenv func(string) string, name string, def int64) int64 {
	if v, err := strconv.ParseInt(getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

// startCache builds the response cache: in-process only when REDIS_URL is
// empty (one info line), otherwise with the Redis tier (an unreachable
// Redis is one warning; the cache recovers by itself). Zero sizes take the
// cache's defaults; obs may be nil.
func startCache(sc serveConfig, obs cache.Observer, log *slog.Logger) (*cache.Cache, func(), error) {
	if sc.CacheLocalBytes < 0 || sc.CacheMaxEntryBytes < 0 {
		return nil, nil, fmt.Errorf("%w: cache sizes must be positive", errUsage)
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
