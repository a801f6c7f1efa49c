package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wingman-app/wingate/host/store/seed"
)

// migrationFiles are the versioned schema migrations, NNNN_name.sql,
// applied in version order, each in its own transaction.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema step: SQL from a file, or a Go step for data.
type migration struct {
	version int
	name    string
	sql     string
	apply   func(ctx context.Context, tx pgx.Tx) error
}

// catalogueVersion is the Go step that loads the challenge catalogue.
const catalogueVersion = 1000

func migrations() ([]migration, error) {
	ents, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("pgstore: read migrations: %w", err)
	}
	var out []migration
	for _, e := range ents {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("pgstore: migration file %q is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("pgstore: read migration %s: %w", e.Name(), err)
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	out = append(out, migration{version: catalogueVersion, name: "challenge_catalogue", apply: loadCatalogue})
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("pgstore: two migrations with version %d", out[i].version)
		}
	}
	return out, nil
}

// loadCatalogue inserts the challenge catalogue (reference data).
func loadCatalogue(ctx context.Context, tx pgx.Tx) error {
	rows := [][]any{}
	for _, c := range seed.Challenges() {
		rows = append(rows, []any{c.ID, c.Slug, c.Title, c.Description, c.Category, c.Difficulty, c.Points})
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"challenges"},
		[]string{"id", "slug", "title", "description", "category", "difficulty", "points"}, pgx.CopyFromRows(rows))
	return err
}

// migrateLockKey is the advisory lock that serialises concurrent
// migrators (several instances starting at once).
const migrateLockKey = 0x77696e67 // "wing"

// MigrationStatus is one migration and whether it is applied.
type MigrationStatus struct {
	Version int
	Name    string
	Applied bool
}

// Migrate applies every pending migration and returns the versions it
// applied. It is safe to run from several processes at once.
func (s *Store) Migrate(ctx context.Context) ([]int, error) {
	all, err := migrations()
	if err != nil {
		return nil, err
	}
	ctx = withQueryName(ctx, "migrate")
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.mapErr("migrate", err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return nil, s.mapErr("migrate", err)
	}
	defer c.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLockKey) //nolint:errcheck
	applied, err := appliedVersions(ctx, c)
	if err != nil {
		return nil, s.mapErr("migrate", err)
	}
	var done []int
	for _, m := range all {
		if applied[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
				return err
			}
			if m.apply != nil {
				if err := m.apply(ctx, tx); err != nil {
					return err
				}
			} else if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("pgstore: migration %d %s: %w", m.version, m.name, s.mapErr("migrate", err))
		}
		done = append(done, m.version)
	}
	s.migrated.Store(true)
	s.startHealthWindow()
	return done, nil
}

func appliedVersions(ctx context.Context, c *pgxpool.Conn) (map[int]bool, error) {
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, err
	}
	rows, err := c.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, v := range vs {
		out[int(v)] = true
	}
	return out, nil
}

// MigrationStatus lists every known migration and whether it is applied.
func (s *Store) MigrationStatus(ctx context.Context) ([]MigrationStatus, error) {
	all, err := migrations()
	if err != nil {
		return nil, err
	}
	var applied map[int]bool
	err = s.run(ctx, "migrate.status", true, func(ctx context.Context, c *pgxpool.Conn) error {
		var err error
		applied, err = appliedVersions(ctx, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]MigrationStatus, len(all))
	for i, m := range all {
		out[i] = MigrationStatus{Version: m.version, Name: m.name, Applied: applied[m.version]}
	}
	return out, nil
}
