package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wingman-app/wingate/host/keys"
	"github.com/wingman-app/wingate/host/store"
)

// Keys is the virtual keys' store over this pool (tables api_keys and
// api_key_usage).
func (s *Store) Keys() keys.Store { return keyStore{s} }

type keyStore struct{ s *Store }

var _ keys.Store = keyStore{}

// keyErr maps the store's sentinels onto the keys package's.
func keyErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w", keys.ErrNotFound, err)
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %w", keys.ErrInvalid, err)
	}
	return fmt.Errorf("%w: %w", keys.ErrUnavailable, err)
}

const keyCols = `id, name, hint, models, rpm, tpm, budget_micros, budget_period, expires_at, metadata, created_at, rotated_at, revoked_at`

func scanKey(row pgx.Row) (keys.Key, error) {
	var k keys.Key
	var budget int64
	var period string
	err := row.Scan(&k.ID, &k.Name, &k.Hint, &k.Models, &k.RPM, &k.TPM, &budget, &period, &k.ExpiresAt, &k.Metadata,
		&k.CreatedAt, &k.RotatedAt, &k.RevokedAt)
	k.Budget, k.BudgetPeriod = keys.Micros(budget), keys.Period(period)
	k.CreatedAt = k.CreatedAt.UTC()
	for _, t := range []*time.Time{k.ExpiresAt, k.RotatedAt, k.RevokedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return k, err
}

func (ks keyStore) CreateKey(ctx context.Context, k keys.Key, hash []byte) error {
	models := k.Models
	if models == nil {
		models = []string{}
	}
	return keyErr(ks.s.run(ctx, "keys.create", false, func(ctx context.Context, c *pgxpool.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO api_keys (id, name, secret_hash, hint, models, rpm, tpm, budget_micros, budget_period, expires_at, metadata, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			k.ID, k.Name, hash, k.Hint, models, k.RPM, k.TPM, int64(k.Budget), string(k.BudgetPeriod), k.ExpiresAt, k.Metadata, k.CreatedAt)
		return err
	}))
}

// oneKey runs a query returning one key row.
func (ks keyStore) oneKey(ctx context.Context, name, sql string, args ...any) (keys.Key, error) {
	var k keys.Key
	err := ks.s.run(ctx, name, true, func(ctx context.Context, c *pgxpool.Conn) error {
		var err error
		k, err = scanKey(c.QueryRow(ctx, sql, args...))
		return err
	})
	return k, keyErr(err)
}

func (ks keyStore) KeyBySecretHash(ctx context.Context, hash []byte, now time.Time) (keys.Key, error) {
	return ks.oneKey(ctx, "keys.by_secret", `SELECT `+keyCols+` FROM api_keys
		WHERE secret_hash = $1 OR (prev_secret_hash = $1 AND prev_valid_until > $2) LIMIT 1`, hash, now)
}

func (ks keyStore) GetKey(ctx context.Context, id string) (keys.Key, error) {
	return ks.oneKey(ctx, "keys.get", `SELECT `+keyCols+` FROM api_keys WHERE id = $1`, id)
}

func (ks keyStore) ListKeys(ctx context.Context) ([]keys.Key, error) {
	var out []keys.Key
	err := ks.s.run(ctx, "keys.list", true, func(ctx context.Context, c *pgxpool.Conn) error {
		out = out[:0]
		rows, err := c.Query(ctx, `SELECT `+keyCols+` FROM api_keys ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, err := scanKey(rows)
			if err != nil {
				return err
			}
			out = append(out, k)
		}
		return rows.Err()
	})
	return out, keyErr(err)
}

func (ks keyStore) RotateKey(ctx context.Context, id string, hash []byte, hint string, at, graceUntil time.Time) (keys.Key, error) {
	return ks.oneKey(ctx, "keys.rotate", `UPDATE api_keys SET prev_secret_hash = secret_hash, prev_valid_until = $4,
		secret_hash = $2, hint = $3, rotated_at = $5 WHERE id = $1 RETURNING `+keyCols, id, hash, hint, graceUntil, at)
}

func (ks keyStore) RevokeKey(ctx context.Context, id string, at time.Time) (keys.Key, error) {
	return ks.oneKey(ctx, "keys.revoke", `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2)
		WHERE id = $1 RETURNING `+keyCols, id, at)
}

func (ks keyStore) UpdateKeyLimits(ctx context.Context, id string, l keys.Limits) (keys.Key, error) {
	models := l.Models
	if models == nil {
		models = []string{}
	}
	return ks.oneKey(ctx, "keys.limits", `UPDATE api_keys SET models = $2, rpm = $3, tpm = $4, budget_micros = $5, budget_period = $6
		WHERE id = $1 RETURNING `+keyCols, id, models, l.RPM, l.TPM, int64(l.Budget), string(l.BudgetPeriod))
}

// RecordUsage writes the rows in one statement; a row whose request id is
// already there is skipped, so a retried write counts nothing twice.
func (ks keyStore) RecordUsage(ctx context.Context, rows []keys.Usage) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	ids, ats, reqs, eps, models, tiers := make([]string, n), make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ins, outs, costs, partial := make([]int32, n), make([]int32, n), make([]int64, n), make([]bool, n)
	for i, u := range rows {
		ids[i], ats[i], reqs[i], eps[i], models[i], tiers[i] = u.KeyID, u.At, u.RequestID, u.Endpoint, u.Model, u.Tier
		ins[i], outs[i], costs[i], partial[i] = int32(u.InputTokens), int32(u.OutputTokens), int64(u.Cost), u.Partial
	}
	return keyErr(ks.s.run(ctx, "keys.usage", true, func(ctx context.Context, c *pgxpool.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO api_key_usage (key_id, at, request_id, endpoint, model, tier, input_tokens, output_tokens, cost_micros, partial)
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::int[], $9::bigint[], $10::bool[])
			ON CONFLICT (request_id) DO NOTHING`, ids, ats, reqs, eps, models, tiers, ins, outs, costs, partial)
		return err
	}))
}

func (ks keyStore) KeySpend(ctx context.Context, id string, from, to time.Time) (keys.Spend, error) {
	sp := keys.Spend{KeyID: id, From: from, To: to}
	var cost int64
	err := ks.s.run(ctx, "keys.spend", true, func(ctx context.Context, c *pgxpool.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE partial), COALESCE(sum(input_tokens), 0),
			COALESCE(sum(output_tokens), 0), COALESCE(sum(cost_micros), 0)
			FROM api_key_usage WHERE key_id = $1 AND at >= $2 AND at < $3`, id, from, to).
			Scan(&sp.Requests, &sp.Partial, &sp.InputTokens, &sp.OutputTokens, &cost)
	})
	sp.Cost = keys.Micros(cost)
	return sp, keyErr(err)
}
