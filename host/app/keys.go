package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/keys"
	"github.com/wingman-app/wingate/host/store"
)

// startKeys starts the gateway's virtual keys: kept in PostgreSQL when
// the store is (the ledger beside them), in process otherwise; their
// limits shared by every instance through rdb (nil: this instance counts
// alone). The returned function flushes the ledger.
func startKeys(cfg Config, st store.Store, rdb redis.UniversalClient, log *slog.Logger) (*keys.Service, func()) {
	var ks keys.Store = keys.NewMemStore()
	if pg, ok := st.(interface{ Keys() keys.Store }); ok {
		ks = pg.Keys()
	}
	svc := keys.NewService(keys.Config{Store: ks, Logger: log.With("component", "keys"),
		Limiter: keys.LimiterConfig{Redis: rdb, Mode: keys.Mode(cfg.KeysRedisDown), Replicas: cfg.KeysReplicas}})
	return svc, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			log.Error("key ledger: rows not written at shutdown", "pending", svc.Pending(), "err", err)
		}
	}
}
