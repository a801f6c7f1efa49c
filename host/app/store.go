package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/server"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/memstore"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// demoUsers is the size of the in-memory demo data set.
const demoUsers = 2000

// startStore opens the store named by databaseURL: the in-memory demo
// store when it is empty, otherwise PostgreSQL through a pgx pool. With
// PostgreSQL the server starts even when the database is down: migrations
// run in the background until they succeed, the returned ready check (and
// so /readyz) fails until then and whenever the database is unreachable,
// and requests answer 503 meanwhile. obs may be nil.
//
// Pool settings: DATABASE_URL may carry pgxpool's parameters
// (pool_max_conns, pool_min_conns, pool_max_conn_lifetime,
// pool_max_conn_idle_time, pool_health_check_period); otherwise
// pgstore's defaults apply (see its package documentation).
// cfg.DBAcquireTimeout and cfg.DBOpTimeout, when set, override the wait
// for a connection (1 s) and the bound on one operation (2 s).
func startStore(ctx context.Context, cfg Config, obs store.QueryObserver, log *slog.Logger) (store.Store, server.ReadyCheck, func(), error) {
	databaseURL := cfg.DatabaseURL
	if databaseURL == "" {
		st := memstore.Demo(demoUsers)
		log.Info("store: DATABASE_URL unset, in-memory store with generated demo data", "users", demoUsers)
		return st, server.ReadyCheck{Name: "store", Check: st.Ping, Required: true}, st.Close, nil
	}
	pcfg := pgstore.Config{URL: databaseURL, Observer: obs, Logger: log.With("component", "store"),
		AcquireTimeout: cfg.DBAcquireTimeout, OpTimeout: cfg.DBOpTimeout}
	st, err := pgstore.Open(ctx, pcfg)
	if err != nil {
		return nil, server.ReadyCheck{}, nil, err
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		migrateUntilDone(mctx, st, log)
	}()
	eff := st.Config()
	log.Info("store: PostgreSQL", "max_conns", eff.MaxConns, "min_conns", eff.MinConns,
		"acquire_timeout", eff.AcquireTimeout, "op_timeout", eff.OpTimeout)
	return st, server.ReadyCheck{Name: "database", Check: st.Ping, Required: true}, func() {
		cancel()
		<-done
		st.Close()
	}, nil
}

// migrateUntilDone applies migrations, retrying with backoff (up to 10 s
// apart) while the database is unreachable. It logs the first failure
// and the success, not every attempt.
func migrateUntilDone(ctx context.Context, st *pgstore.Store, log *slog.Logger) {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		applied, err := st.Migrate(actx)
		cancel()
		if err == nil {
			log.Info("store: schema up to date", "applied", applied, "attempts", attempt)
			return
		}
		if attempt == 1 {
			log.Warn("store: cannot migrate yet, retrying in the background; /readyz fails meanwhile", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// startAuth returns the token authority. With no secret configured it
// makes a random one for this process and says so; `wingate serve`
// passes the development secret of its address instead (host/cli).
func startAuth(secret string, maxLifetime time.Duration, log *slog.Logger) (*auth.Authority, error) {
	lifetime := auth.WithMaxLifetime(maxLifetime)
	if secret != "" {
		a, err := auth.New([]byte(secret), lifetime)
		if err != nil {
			return nil, fmt.Errorf("%w: WINGATE_JWT_SECRET: %w", ErrUsage, err)
		}
		return a, nil
	}
	log.Warn("auth: no JWT secret configured: a random one for this process; tokens signed elsewhere are refused")
	return auth.New(auth.RandomSecret(), lifetime)
}
