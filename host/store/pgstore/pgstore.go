// Package pgstore implements store.Store on PostgreSQL through a pgx v5
// connection pool. It is the only package that imports pgx.
//
// # Pool sizing
//
// MaxConns defaults to 4 per CPU (at least 8): the queries are short and
// mostly CPU-bound in the server, so more connections than the database
// has cores mostly queue inside PostgreSQL; 4× leaves room for
// connections waiting on I/O or locks while keeping idle memory small.
// MinConns (2) keeps warm connections for the first requests after a
// quiet period. MaxConnLifetime (30 min, jittered) rotates connections so
// load spreads after fail-over; MaxConnIdleTime (5 min) returns bursts'
// extra connections. Several host instances share one database: keep
// instances × MaxConns below PostgreSQL's max_connections (100 by
// default) minus a reserve for operators.
//
// # Timeouts and failures
//
// Every operation runs under OpTimeout (default 2 s) and waits at most
// AcquireTimeout (default 1 s) for a connection. Connection failures,
// terminated backends, refused connections and timeouts are reported as
// store.ErrUnavailable (HTTP 503); idempotent operations are retried on
// another connection first, so a pool whose connections were killed
// recovers on the next request. The pool reconnects by itself once the
// database is back; nothing needs restarting.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wingman-app/wingate/host/store"
)

var (
	_ store.Store       = (*Store)(nil)
	_ store.PoolStatser = (*Store)(nil)
)

// Config configures the pool. Zero fields take the defaults documented in
// the package comment.
type Config struct {
	// URL is a PostgreSQL connection string (DATABASE_URL). Pool settings
	// given as URL parameters (pool_max_conns, …) are overridden by the
	// non-zero fields below and win over the defaults.
	URL               string
	MaxConns          int32
	MinConns          int32
	MaxConnLifetime   time.Duration
	MaxConnIdleTime   time.Duration
	HealthCheckPeriod time.Duration
	// ConnectTimeout bounds establishing one connection.
	ConnectTimeout time.Duration
	// AcquireTimeout bounds the wait for a pooled connection.
	AcquireTimeout time.Duration
	// OpTimeout bounds one store operation, retries included.
	OpTimeout time.Duration
	// Observer receives every named query's duration; nil disables it.
	Observer store.QueryObserver
	// Logger receives state changes (reachable/unreachable); nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	}
	if c.MinConns <= 0 {
		c.MinConns = min(2, c.MaxConns)
	}
	if c.MaxConnLifetime <= 0 {
		c.MaxConnLifetime = 30 * time.Minute
	}
	if c.MaxConnIdleTime <= 0 {
		c.MaxConnIdleTime = 5 * time.Minute
	}
	if c.HealthCheckPeriod <= 0 {
		c.HealthCheckPeriod = 15 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.AcquireTimeout <= 0 {
		c.AcquireTimeout = time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	cfg      Config
	log      *slog.Logger
	migrated atomic.Bool
	health   healthState
}

// Open creates the pool. It does not wait for the database: Open succeeds
// while PostgreSQL is down, operations fail with store.ErrUnavailable
// until it is up, and the pool connects as soon as it is. Call Migrate
// before serving.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	explicit := cfg
	cfg.setDefaults()
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pgstore: parse database url: %w", err)
	}
	// A pool parameter in the URL wins over a default, not over an
	// explicit Config field.
	inURL := func(param string) bool { return strings.Contains(cfg.URL, param) }
	if explicit.MaxConns > 0 || !inURL("pool_max_conns") {
		pc.MaxConns = cfg.MaxConns
	}
	if explicit.MinConns > 0 || !inURL("pool_min_conns") {
		pc.MinConns = cfg.MinConns
	}
	pc.MinConns = min(pc.MinConns, pc.MaxConns)
	if explicit.MaxConnLifetime > 0 || !inURL("pool_max_conn_lifetime") {
		pc.MaxConnLifetime = cfg.MaxConnLifetime
		pc.MaxConnLifetimeJitter = cfg.MaxConnLifetime / 10
	}
	if explicit.MaxConnIdleTime > 0 || !inURL("pool_max_conn_idle_time") {
		pc.MaxConnIdleTime = cfg.MaxConnIdleTime
	}
	if explicit.HealthCheckPeriod > 0 || !inURL("pool_health_check_period") {
		pc.HealthCheckPeriod = cfg.HealthCheckPeriod
	}
	cfg.MaxConns, cfg.MinConns, cfg.MaxConnLifetime = pc.MaxConns, pc.MinConns, pc.MaxConnLifetime
	cfg.MaxConnIdleTime, cfg.HealthCheckPeriod = pc.MaxConnIdleTime, pc.HealthCheckPeriod
	if explicit.ConnectTimeout > 0 || pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	}
	cfg.ConnectTimeout = pc.ConnConfig.ConnectTimeout
	pc.ConnConfig.Tracer = &tracer{obs: cfg.Observer}
	if pc.ConnConfig.RuntimeParams == nil {
		pc.ConnConfig.RuntimeParams = map[string]string{}
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "wingate"
	// A server-side bound so that a query the client gave up on does not
	// keep running.
	pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(cfg.OpTimeout.Milliseconds())
	// Check a connection that sat idle before handing it out: a backend
	// terminated meanwhile is found here rather than by a request.
	pc.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool { return p.IdleDuration > time.Second }
	pc.PingTimeout = cfg.ConnectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: create pool: %w", err)
	}
	s := &Store{pool: pool, cfg: cfg, log: cfg.Logger}
	s.health.reachable.Store(true)
	return s, nil
}

// Close closes every connection.
func (s *Store) Close() { s.pool.Close() }

// Config returns the effective configuration (defaults filled in).
func (s *Store) Config() Config { return s.cfg }

// Ping checks that the database answers and the schema is migrated.
func (s *Store) Ping(ctx context.Context) error {
	return s.run(ctx, "ping", true, func(ctx context.Context, c *pgxpool.Conn) error {
		if err := c.Ping(ctx); err != nil {
			return err
		}
		if !s.migrated.Load() {
			return fmt.Errorf("pgstore: schema not migrated yet: %w", store.ErrUnavailable)
		}
		return nil
	})
}

// Migrated reports whether Migrate has completed.
func (s *Store) Migrated() bool { return s.migrated.Load() }

// run executes fn on a pooled connection under the operation timeout and
// maps its error. Idempotent operations are retried when the connection
// failed underneath them, up to once per pooled connection plus one (after
// pg_terminate_backend every pooled connection may be dead, and each
// failed attempt costs microseconds); any operation is retried when
// pgconn reports that nothing reached the server. The operation timeout
// bounds the whole.
func (s *Store) run(ctx context.Context, name string, idempotent bool, fn func(ctx context.Context, c *pgxpool.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	ctx = withQueryName(ctx, name)
	var err error
	attempts := min(max(int(s.cfg.MaxConns)+1, 3), 33)
	for attempt := 0; attempt < attempts; attempt++ {
		err = s.attempt(ctx, fn)
		if err == nil {
			s.health.ok(s.log)
			return nil
		}
		var ae *acquireError
		if errors.As(err, &ae) || !isConnErr(err) || ctx.Err() != nil || !(idempotent || pgconn.SafeToRetry(err)) {
			// A failed acquire already tried to connect: retrying at once
			// would only multiply connection attempts against a database
			// that is down.
			break
		}
	}
	return s.mapErr(name, err)
}

func (s *Store) attempt(ctx context.Context, fn func(ctx context.Context, c *pgxpool.Conn) error) error {
	actx, acancel := context.WithTimeout(ctx, s.cfg.AcquireTimeout)
	c, err := s.pool.Acquire(actx)
	acancel()
	if err != nil {
		return &acquireError{err: err}
	}
	defer c.Release()
	err = fn(ctx, c)
	if err != nil && isConnErr(err) {
		// Do not hand a broken connection to the next caller.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.Conn().PgConn().Close(cctx)
		ccancel()
	}
	return err
}

// acquireError is a failure to get a connection from the pool.
type acquireError struct{ err error }

func (e *acquireError) Error() string { return "acquire: " + e.err.Error() }
func (e *acquireError) Unwrap() error { return e.err }

// tx runs fn in a transaction.
func (s *Store) tx(ctx context.Context, name string, idempotent bool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return s.run(ctx, name, idempotent, func(ctx context.Context, c *pgxpool.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { return fn(ctx, tx) })
	})
}

// mapErr turns a driver error into a store error.
func (s *Store) mapErr(name string, err error) error {
	if err == nil {
		return nil
	}
	var fe *store.FieldError
	if errors.As(err, &fe) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) ||
		errors.Is(err, store.ErrConflict) {
		return err
	}
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("pgstore: %s: %w", name, store.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return fmt.Errorf("pgstore: %s: %w: %s", name, store.ErrConflict, pe.Message)
		case pe.Code == "23503":
			return fmt.Errorf("pgstore: %s: %w: %s", name, store.ErrNotFound, pe.Detail)
		case pe.Code == "23514" || strings.HasPrefix(pe.Code, "22"):
			return fmt.Errorf("pgstore: %s: %w: %s", name, store.ErrInvalid, pe.Message)
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57"), pe.Code == "53300", pe.Code == "40001", pe.Code == "40P01":
			// connection exception, operator intervention (terminated,
			// shutting down, statement timeout), too many connections,
			// serialisation failure, deadlock.
			if isConnErr(pe) {
				s.health.fail(s.log, err)
			}
			return fmt.Errorf("pgstore: %s: %w: %s (%s)", name, store.ErrUnavailable, pe.Message, pe.Code)
		}
		return fmt.Errorf("pgstore: %s: %w", name, err)
	}
	if isConnErr(err) {
		// Timeouts and cancellations say the caller gave up, not that the
		// database is gone: they do not flip the reachability state.
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			s.health.fail(s.log, err)
		}
		return fmt.Errorf("pgstore: %s: %w: %w", name, store.ErrUnavailable, err)
	}
	return fmt.Errorf("pgstore: %s: %w", name, err)
}

// isConnErr reports whether err says the connection or the server is
// gone or too slow, as opposed to a problem with the statement.
func isConnErr(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "closed pool") || strings.Contains(msg, "connection reset")
}
