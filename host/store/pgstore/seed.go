package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/seed"
)

// SeedOptions control Seed.
type SeedOptions struct {
	// Users is how many users to generate (ids 1..Users).
	Users int
	// Seed selects the generated data; 0 means seed.DefaultSeed.
	Seed uint64
	// Reset replaces existing users (and everything hanging off them:
	// locations, completions, reputation, chats). Without it Seed refuses
	// to touch a database that already has users (store.ErrConflict).
	Reset bool
}

// SeedReport says what Seed wrote and how long it took.
type SeedReport struct {
	Users, Locations, Completions, Reputation int64
	Duration                                  time.Duration
}

// Seed fills the database with generated users through COPY, in one
// transaction: the old users go (TRUNCATE), the secondary indexes and
// foreign keys of the bulk tables are dropped, users, locations,
// completions and per-category reputation are copied in, the indexes are
// rebuilt and the keys validated once; then ANALYZE and VACUUM so the
// planner sees the new sizes and matching gets index-only scans.
func (s *Store) Seed(ctx context.Context, o SeedOptions) (SeedReport, error) {
	start := time.Now()
	var rep SeedReport
	if o.Users < 0 {
		return rep, store.Invalid("users", "must not be negative")
	}
	if o.Seed == 0 {
		o.Seed = seed.DefaultSeed
	}
	ctx = withQueryName(ctx, "seed")
	g := seed.New(o.Seed)
	n := int64(o.Users)

	err := s.bulk(ctx, func(tx pgx.Tx) error {
		var existing int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&existing); err != nil {
			return err
		}
		if existing > 0 && !o.Reset {
			return fmt.Errorf("pgstore: seed: database already has %d users (reset to replace them): %w", existing, store.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `TRUNCATE users, locations, completions, reputation,
			chat_sessions, chat_messages, chat_summaries RESTART IDENTITY`); err != nil {
			return err
		}
		// Building indexes and checking foreign keys once, after the load,
		// is several times faster than maintaining them row by row.
		for _, d := range bulkDeferred {
			if _, err := tx.Exec(ctx, d.drop); err != nil {
				return fmt.Errorf("%s: %w", d.drop, err)
			}
		}
		copies := []struct {
			dst   *int64
			table string
			cols  []string
			src   *recordSource
		}{
			{&rep.Users, "users", []string{"id", "name", "city", "open_to_wingman", "score", "created_at"},
				&recordSource{g: g, n: n, rows: func(r seed.UserRecord, out [][]any) [][]any {
					return append(out, []any{r.User.ID, r.User.Name, r.User.City, r.User.OpenToWingman, r.Score, r.User.CreatedAt})
				}}},
			{&rep.Locations, "locations", []string{"user_id", "lat", "lon", "updated_at", "open_to_wingman", "score"},
				&recordSource{g: g, n: n, rows: func(r seed.UserRecord, out [][]any) [][]any {
					if !r.HasLocation {
						return out
					}
					return append(out, []any{r.User.ID, r.Location.Lat, r.Location.Lon, r.Location.UpdatedAt, r.User.OpenToWingman, r.Score})
				}}},
			{&rep.Completions, "completions", []string{"user_id", "challenge_id", "day", "points", "completed_at"},
				&recordSource{g: g, n: n, rows: func(r seed.UserRecord, out [][]any) [][]any {
					for _, c := range r.Completions {
						day := c.At.UTC().Truncate(24 * time.Hour)
						out = append(out, []any{r.User.ID, c.ChallengeID, day, c.Points, c.At})
					}
					return out
				}}},
			{&rep.Reputation, "reputation", []string{"user_id", "category", "score", "completions"},
				&recordSource{g: g, n: n, rows: func(r seed.UserRecord, out [][]any) [][]any {
					for _, cat := range store.Categories {
						if cs, ok := r.ByCategory[cat]; ok {
							out = append(out, []any{r.User.ID, cs.Category, cs.Score, cs.Completions})
						}
					}
					return out
				}}},
		}
		for _, c := range copies {
			var err error
			*c.dst, err = tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, c.src)
			c.src.stop()
			if err != nil {
				return fmt.Errorf("copy %s: %w", c.table, err)
			}
		}
		for _, d := range bulkDeferred {
			if _, err := tx.Exec(ctx, d.create); err != nil {
				return fmt.Errorf("%s: %w", d.create, err)
			}
		}
		return nil
	})
	if err != nil {
		return rep, s.mapErr("seed", err)
	}
	err = s.bulk(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('users', 'id'), GREATEST((SELECT max(id) FROM users), 1))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ANALYZE users, completions, reputation`)
		return err
	})
	if err != nil {
		return rep, s.mapErr("seed", err)
	}
	// VACUUM (not allowed in a transaction) sets the visibility map so that
	// matching reads locations with index-only scans.
	if err := s.vacuum(ctx, "locations"); err != nil {
		return rep, s.mapErr("seed", err)
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// bulkDeferred lists what Seed drops before its COPYs and recreates
// after them. The definitions match migrations/0001_schema.sql (a test
// compares the schema after a seed with a freshly migrated one).
var bulkDeferred = []struct{ drop, create string }{
	{`ALTER TABLE locations DROP CONSTRAINT locations_user_fk`,
		`ALTER TABLE locations ADD CONSTRAINT locations_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE`},
	{`DROP INDEX locations_wingman_geo_idx`,
		`CREATE INDEX locations_wingman_geo_idx ON locations (lat, lon) INCLUDE (user_id, score) WHERE open_to_wingman`},
	{`ALTER TABLE completions DROP CONSTRAINT completions_user_fk`,
		`ALTER TABLE completions ADD CONSTRAINT completions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE`},
	{`ALTER TABLE completions DROP CONSTRAINT completions_challenge_fk`,
		`ALTER TABLE completions ADD CONSTRAINT completions_challenge_fk FOREIGN KEY (challenge_id) REFERENCES challenges (id)`},
	{`ALTER TABLE completions DROP CONSTRAINT completions_once_a_day`,
		`ALTER TABLE completions ADD CONSTRAINT completions_once_a_day UNIQUE (user_id, challenge_id, day)`},
	{`DROP INDEX completions_user_recent_idx`,
		`CREATE INDEX completions_user_recent_idx ON completions (user_id, completed_at DESC, id DESC)`},
	{`ALTER TABLE reputation DROP CONSTRAINT reputation_user_fk`,
		`ALTER TABLE reputation ADD CONSTRAINT reputation_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE`},
}

// bulk runs fn in a transaction without the statement timeout that
// guards request queries.
func (s *Store) bulk(ctx context.Context, fn func(tx pgx.Tx) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
			return err
		}
		return fn(tx)
	})
}

// vacuum runs VACUUM (ANALYZE) on table without the statement timeout.
func (s *Store) vacuum(ctx context.Context, table string) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return err
	}
	defer c.Exec(context.WithoutCancel(ctx), "RESET statement_timeout") //nolint:errcheck
	_, err = c.Exec(ctx, "VACUUM (ANALYZE) "+pgx.Identifier{table}.Sanitize())
	return err
}

// recordSource yields the rows derived from each generated user. Users
// are generated ahead by genWorkers goroutines, in batches, while pgx
// encodes and sends the previous ones; batches arrive in id order.
type recordSource struct {
	g    *seed.Generator
	n    int64
	rows func(seed.UserRecord, [][]any) [][]any

	started bool
	chans   []chan [][]any
	stopc   chan struct{}
	wg      sync.WaitGroup
	next    int // channel of the next batch
	buf     [][]any
	cur     []any
}

const (
	genWorkers   = 2
	genBatchSize = 512 // users per batch
)

func (r *recordSource) start() {
	r.started = true
	r.stopc = make(chan struct{})
	for w := range genWorkers {
		ch := make(chan [][]any, 4)
		r.chans = append(r.chans, ch)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(ch)
			for first := int64(w)*genBatchSize + 1; first <= r.n; first += genWorkers * genBatchSize {
				var batch [][]any
				for id := first; id < first+genBatchSize && id <= r.n; id++ {
					batch = r.rows(r.g.User(id), batch)
				}
				select {
				case ch <- batch:
				case <-r.stopc:
					return
				}
			}
		}()
	}
}

// stop ends the generators (after CopyFrom, whether or not it finished).
func (r *recordSource) stop() {
	if r.started {
		close(r.stopc)
		r.wg.Wait()
		r.started = false
	}
}

func (r *recordSource) Next() bool {
	if !r.started && r.chans == nil {
		r.start()
	}
	for len(r.buf) == 0 {
		b, ok := <-r.chans[r.next]
		if !ok {
			return false
		}
		r.next = (r.next + 1) % len(r.chans)
		r.buf = b
	}
	r.cur, r.buf = r.buf[0], r.buf[1:]
	return true
}

func (r *recordSource) Values() ([]any, error) { return r.cur, nil }
func (r *recordSource) Err() error             { return nil }
