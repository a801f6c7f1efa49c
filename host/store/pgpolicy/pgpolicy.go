// Package pgpolicy keeps policy versions in PostgreSQL for a fleet of
// Wingate instances: every version's module bytes, configuration,
// signature and status, and which version is active for each kind
// (record.Store), plus change notifications through LISTEN/NOTIFY
// (it implements rollout.Notifier). Its table is its own (policy_versions),
// created by Open.
package pgpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wingman-app/wingate/host/rollout/record"
)

// DefaultChannel is the NOTIFY channel of the fleet.
const DefaultChannel = "wingate_policy"

var (
	_ record.Store = (*Store)(nil)
)

// Store is a record.Store and record.Notifier on PostgreSQL. It is safe
// for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	url     string
	channel string
	log     *slog.Logger
}

// Config configures Open.
type Config struct {
	// URL is the PostgreSQL connection string (DATABASE_URL).
	URL string
	// Channel is the LISTEN/NOTIFY channel; empty: DefaultChannel.
	Channel string
	// MaxConns sizes the pool (4 when zero): the version store is small
	// and rarely written.
	MaxConns int32
	Logger   *slog.Logger
}

// Open creates the pool and the table (migrate).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pgpolicy: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = 4
	}
	pc.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgpolicy: %w", err)
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{pool: pool, url: cfg.URL, channel: cfg.Channel, log: cfg.Logger}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

const schema = `
CREATE TABLE IF NOT EXISTS policy_versions (
	id           bigserial PRIMARY KEY,
	digest       text        NOT NULL,
	kind         text        NOT NULL,
	name         text        NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	config       bytea,
	deadline_ms  double precision NOT NULL DEFAULT 0,
	default_tier text        NOT NULL DEFAULT '',
	signature    text        NOT NULL DEFAULT '',
	cases        bytea,
	wasm         bytea       NOT NULL,
	status       text        NOT NULL DEFAULT 'inactive',
	reason       text        NOT NULL DEFAULT '',
	activated_at timestamptz,
	source       text        NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS policy_versions_one_active ON policy_versions (kind) WHERE status = 'active';
`

// migrateLock serialises instances creating the table at once.
const migrateLock = 0x706f6c69 // "poli"

// migrate creates the table and its index if they do not exist.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgpolicy: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("pgpolicy: migrate: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock)
	if _, err := conn.Exec(ctx, schema); err != nil {
		return fmt.Errorf("pgpolicy: migrate: %w", err)
	}
	return nil
}

const cols = `id, digest, kind, name, created_at, config, deadline_ms, default_tier, signature, cases, status, reason, activated_at, source, length(wasm)`

func scan(row pgx.Row) (record.Record, error) {
	var r record.Record
	var activated *time.Time
	var status string
	err := row.Scan(&r.ID, &r.Digest, &r.Kind, &r.Name, &r.CreatedAt, &r.Config, &r.DeadlineMS, &r.DefaultTier,
		&r.Signature, &r.Cases, &status, &r.Reason, &activated, &r.Source, &r.Size)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, record.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("pgpolicy: %w", err)
	}
	r.Status = record.Status(status)
	if activated != nil {
		r.ActivatedAt = activated.UTC()
	}
	r.CreatedAt = r.CreatedAt.UTC()
	return r, nil
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Put implements record.Store.
func (s *Store) Put(ctx context.Context, rec *record.Record, wasm []byte) error {
	if rec.Status == "" {
		rec.Status = record.StatusInactive
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO policy_versions
		(digest, kind, name, config, deadline_ms, default_tier, signature, cases, wasm, status, reason, source)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id, created_at`,
		rec.Digest, rec.Kind, rec.Name, nullBytes(rec.Config), rec.DeadlineMS, rec.DefaultTier, rec.Signature,
		nullBytes(rec.Cases), wasm, string(rec.Status), rec.Reason, rec.Source).Scan(&rec.ID, &rec.CreatedAt)
	if err != nil {
		return fmt.Errorf("pgpolicy: put: %w", err)
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	rec.Size = len(wasm)
	return nil
}

// Get implements record.Store.
func (s *Store) Get(ctx context.Context, id int64) (record.Record, error) {
	return scan(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM policy_versions WHERE id = $1`, id))
}

// Wasm implements record.Store.
func (s *Store) Wasm(ctx context.Context, id int64) ([]byte, error) {
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT wasm FROM policy_versions WHERE id = $1`, id).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, record.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("pgpolicy: wasm: %w", err)
	}
	return b, nil
}

// List implements record.Store.
func (s *Store) List(ctx context.Context) ([]record.Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+cols+` FROM policy_versions ORDER BY id DESC`)
	if err != nil {
		return nil, fmt.Errorf("pgpolicy: list: %w", err)
	}
	defer rows.Close()
	var out []record.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgpolicy: list: %w", err)
	}
	return out, nil
}

// SetStatus implements record.Store.
func (s *Store) SetStatus(ctx context.Context, id int64, st record.Status, reason string) error {
	if st == record.StatusActive {
		return errors.New("pgpolicy: set status active: use Activate")
	}
	tag, err := s.pool.Exec(ctx, `UPDATE policy_versions SET status = $2, reason = $3 WHERE id = $1`, id, string(st), reason)
	if err != nil {
		return fmt.Errorf("pgpolicy: set status: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return record.ErrNotFound
	}
	return nil
}

// Activate implements record.Store, in one transaction.
func (s *Store) Activate(ctx context.Context, id int64, oldStatus record.Status, reason string) error {
	if oldStatus == "" {
		oldStatus = record.StatusPrevious
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var kind string
		err := tx.QueryRow(ctx, `SELECT kind FROM policy_versions WHERE id = $1 FOR UPDATE`, id).Scan(&kind)
		if errors.Is(err, pgx.ErrNoRows) {
			return record.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("pgpolicy: activate: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE policy_versions SET status = $2, reason = $3
			WHERE kind = $1 AND status = 'active' AND id <> $4`, kind, string(oldStatus), reason, id); err != nil {
			return fmt.Errorf("pgpolicy: activate: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE policy_versions SET status = 'active', reason = '', activated_at = now()
			WHERE id = $1`, id); err != nil {
			return fmt.Errorf("pgpolicy: activate: %w", err)
		}
		return nil
	})
}

// Notify implements record.Notifier with NOTIFY on the channel.
func (s *Store) Notify(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, 'changed')`, s.channel); err != nil {
		return fmt.Errorf("pgpolicy: notify: %w", err)
	}
	return nil
}

// Listen implements record.Notifier: LISTEN on a dedicated connection,
// reconnecting after a second when it breaks (and then calling fn once,
// since notifications may have been missed).
func (s *Store) Listen(ctx context.Context, fn func()) {
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("pgpolicy: LISTEN connection lost; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, fn func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	defer func() {
		// The connection goes back to the pool: stop listening on it.
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "UNLISTEN *"); err != nil {
			conn.Conn().Close(uctx)
		}
	}()
	fn()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		fn()
	}
}
