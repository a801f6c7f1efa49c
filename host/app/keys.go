package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/keys"
	"github.com/wingman-app/wingate/host/store"
)

// keysRedisTimeout bounds the limiter's Redis calls. It is longer than
// the cache's: a reservation that times out refuses the call (or falls
// back to the local shares), where a cache read only misses.
const keysRedisTimeout = 500 * time.Millisecond

// startKeys starts the gateway's virtual keys: kept in PostgreSQL when
// the store is (the ledger beside them), in process otherwise; their
// limits shared by every instance through the Redis of REDIS_URL, on a
// client of their own (unset: this instance counts alone). The returned
// function flushes the ledger, then closes that client.
func startKeys(cfg Config, st store.Store, log *slog.Logger) (*keys.Service, func(), error) {
	var ks keys.Store = keys.NewMemStore()
	if pg, ok := st.(interface{ Keys() keys.Store }); ok {
		ks = pg.Keys()
	}
	var rdb redis.UniversalClient
	if cfg.RedisURL != "" {
		var err error
		if rdb, _, err = cache.OpenRedis(cfg.RedisURL, keysRedisTimeout); err != nil {
			return nil, nil, fmt.Errorf("%w: REDIS_URL: %v", ErrUsage, err)
		}
	}
	svc := keys.NewService(keys.Config{Store: ks, Logger: log.With("component", "keys"),
		Limiter: keys.LimiterConfig{Redis: rdb, Mode: keys.Mode(cfg.KeysRedisDown), Replicas: cfg.KeysReplicas,
			WaitReplicas: cfg.KeysRedisWait}})
	return svc, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			log.Error("key ledger: rows not written at shutdown", "pending", svc.Pending(), "err", err)
		}
		if rdb != nil {
			rdb.Close()
		}
	}, nil
}
