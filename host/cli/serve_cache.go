package cli

import (
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/cache"
)

// startCache builds the response cache: in-process only when redisURL is
// empty (one info line), otherwise with the Redis tier (an unreachable
// Redis is one warning; the cache recovers by itself). obs may be nil.
func startCache(redisURL string, obs cache.Observer, log *slog.Logger) (*cache.Cache, func(), error) {
	cfg := cache.Config{Logger: log, Observer: obs}
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
