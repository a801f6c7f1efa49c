package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wingman-app/wingate/host/store"
)

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	if u.ID < 0 {
		return store.User{}, store.Invalid("id", "must not be negative")
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	err := s.run(ctx, "users.create", false, func(ctx context.Context, c *pgxpool.Conn) error {
		if u.ID == 0 {
			return c.QueryRow(ctx, `INSERT INTO users (name, city, open_to_wingman, created_at)
				VALUES ($1, $2, $3, $4) RETURNING id, created_at`,
				u.Name, u.City, u.OpenToWingman, u.CreatedAt).Scan(&u.ID, &u.CreatedAt)
		}
		return c.QueryRow(ctx, `INSERT INTO users (id, name, city, open_to_wingman, created_at)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`,
			u.ID, u.Name, u.City, u.OpenToWingman, u.CreatedAt).Scan(&u.CreatedAt)
	})
	if err != nil {
		return store.User{}, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, id int64) (store.User, error) {
	u := store.User{ID: id}
	err := s.run(ctx, "users.get", true, func(ctx context.Context, c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, `SELECT name, city, open_to_wingman, created_at FROM users WHERE id = $1`, id).
			Scan(&u.Name, &u.City, &u.OpenToWingman, &u.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: user %d: %w", id, store.ErrNotFound)
		}
		return err
	})
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

const challengeCols = `id, slug, title, description, category, difficulty, points`

func scanChallenge(row pgx.Row, c *store.Challenge) error {
	return row.Scan(&c.ID, &c.Slug, &c.Title, &c.Description, &c.Category, &c.Difficulty, &c.Points)
}

// ListChallenges implements store.Store with keyset pagination on id.
func (s *Store) ListChallenges(ctx context.Context, f store.ChallengeFilter) (store.ChallengePage, error) {
	if err := f.Validate(); err != nil {
		return store.ChallengePage{}, err
	}
	p := store.ChallengePage{Items: make([]store.Challenge, 0, f.Limit)}
	err := s.run(ctx, "challenges.list", true, func(ctx context.Context, c *pgxpool.Conn) error {
		p.Items = p.Items[:0]
		rows, err := c.Query(ctx, `SELECT `+challengeCols+` FROM challenges
			WHERE id > $1 AND ($2 = '' OR category = $2) AND ($3 = '' OR difficulty = $3)
			ORDER BY id LIMIT $4`, f.After, f.Category, f.Difficulty, f.Limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ch store.Challenge
			if err := scanChallenge(rows, &ch); err != nil {
				return err
			}
			p.Items = append(p.Items, ch)
		}
		return rows.Err()
	})
	if err != nil {
		return store.ChallengePage{}, err
	}
	if len(p.Items) > f.Limit {
		p.Items = p.Items[:f.Limit]
		p.Next = p.Items[f.Limit-1].ID
	}
	return p, nil
}

// GetChallenge implements store.Store.
func (s *Store) GetChallenge(ctx context.Context, id int64) (store.Challenge, error) {
	var ch store.Challenge
	err := s.run(ctx, "challenges.get", true, func(ctx context.Context, c *pgxpool.Conn) error {
		err := scanChallenge(c.QueryRow(ctx, `SELECT `+challengeCols+` FROM challenges WHERE id = $1`, id), &ch)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: challenge %d: %w", id, store.ErrNotFound)
		}
		return err
	})
	return ch, err
}

// CompleteChallenge implements store.Store: the completion, the user's
// total and the category score change in one transaction. The unique
// (user_id, challenge_id, day) key makes a repeat on the same UTC day a
// no-op that returns the first completion, also under concurrency.
func (s *Store) CompleteChallenge(ctx context.Context, userID, challengeID int64, at time.Time) (store.Completion, error) {
	if at.IsZero() {
		at = time.Now()
	}
	var comp store.Completion
	err := s.tx(ctx, "challenges.complete", true, func(ctx context.Context, tx pgx.Tx) error {
		comp = store.Completion{UserID: userID, ChallengeID: challengeID}
		var category string
		err := tx.QueryRow(ctx, `INSERT INTO completions (user_id, challenge_id, day, points, completed_at)
			SELECT $1, ch.id, ($3::timestamptz AT TIME ZONE 'UTC')::date, ch.points, $3
			FROM challenges ch WHERE ch.id = $2
			ON CONFLICT (user_id, challenge_id, day) DO NOTHING
			RETURNING id, points, completed_at, (SELECT category FROM challenges WHERE id = $2)`,
			userID, challengeID, at).Scan(&comp.ID, &comp.Points, &comp.CompletedAt, &category)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Either a repeat or an unknown challenge.
			err = tx.QueryRow(ctx, `SELECT c.id, c.points, c.completed_at, u.score
				FROM completions c JOIN users u ON u.id = c.user_id
				WHERE c.user_id = $1 AND c.challenge_id = $2 AND c.day = ($3::timestamptz AT TIME ZONE 'UTC')::date`,
				userID, challengeID, at).Scan(&comp.ID, &comp.Points, &comp.CompletedAt, &comp.Score)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("pgstore: challenge %d: %w", challengeID, store.ErrNotFound)
			}
			return err
		case err != nil:
			return err
		}
		comp.Created = true
		if err := tx.QueryRow(ctx, `UPDATE users SET score = score + $2 WHERE id = $1 RETURNING score`,
			userID, comp.Points).Scan(&comp.Score); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE locations SET score = $2 WHERE user_id = $1`, userID, comp.Score); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO reputation (user_id, category, score, completions) VALUES ($1, $2, $3, 1)
			ON CONFLICT (user_id, category) DO UPDATE
			SET score = reputation.score + EXCLUDED.score, completions = reputation.completions + 1`,
			userID, category, comp.Points)
		return err
	})
	if err != nil {
		return store.Completion{}, err
	}
	comp.CompletedAt = comp.CompletedAt.UTC()
	return comp, nil
}

// GetReputation implements store.Store in one round trip (a batch).
func (s *Store) GetReputation(ctx context.Context, userID int64, recent int) (store.Reputation, error) {
	if recent < 0 || recent > store.MaxPageSize {
		return store.Reputation{}, store.Invalid("recent", "must be between 0 and 100")
	}
	var rep store.Reputation
	err := s.run(ctx, "reputation.get", true, func(ctx context.Context, c *pgxpool.Conn) error {
		rep = store.Reputation{UserID: userID, Categories: []store.CategoryScore{}, Recent: []store.ReputationEvent{}}
		b := &pgx.Batch{}
		b.Queue(`SELECT score FROM users WHERE id = $1`, userID).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&rep.Score)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("pgstore: user %d: %w", userID, store.ErrNotFound)
			}
			return err
		})
		b.Queue(`SELECT category, score, completions FROM reputation
			WHERE user_id = $1 AND score <> 0 ORDER BY category`, userID).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var cs store.CategoryScore
				if err := rows.Scan(&cs.Category, &cs.Score, &cs.Completions); err != nil {
					return err
				}
				rep.Categories = append(rep.Categories, cs)
			}
			return rows.Err()
		})
		b.Queue(`SELECT c.challenge_id, ch.title, ch.category, c.points, c.completed_at
			FROM completions c JOIN challenges ch ON ch.id = c.challenge_id
			WHERE c.user_id = $1 ORDER BY c.completed_at DESC, c.id DESC LIMIT $2`, userID, recent).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var ev store.ReputationEvent
					if err := rows.Scan(&ev.ChallengeID, &ev.Title, &ev.Category, &ev.Points, &ev.At); err != nil {
						return err
					}
					ev.At = ev.At.UTC()
					rep.Recent = append(rep.Recent, ev)
				}
				return rows.Err()
			})
		return c.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return store.Reputation{}, err
	}
	rep.Level = store.Level(rep.Score)
	return rep, nil
}

// GetLocation implements store.Store.
func (s *Store) GetLocation(ctx context.Context, userID int64) (store.Location, error) {
	l := store.Location{UserID: userID}
	err := s.run(ctx, "location.get", true, func(ctx context.Context, c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, `SELECT lat, lon, updated_at FROM locations WHERE user_id = $1`, userID).
			Scan(&l.Lat, &l.Lon, &l.UpdatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: location of user %d: %w", userID, store.ErrNotFound)
		}
		return err
	})
	l.UpdatedAt = l.UpdatedAt.UTC()
	return l, err
}

// PutLocation implements store.Store (an upsert; retried safely).
func (s *Store) PutLocation(ctx context.Context, loc store.Location) (store.Location, error) {
	if err := loc.Validate(); err != nil {
		return store.Location{}, err
	}
	err := s.run(ctx, "location.put", true, func(ctx context.Context, c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, `INSERT INTO locations (user_id, lat, lon, updated_at, open_to_wingman, score)
			SELECT u.id, $2, $3, now(), u.open_to_wingman, u.score FROM users u WHERE u.id = $1
			ON CONFLICT (user_id) DO UPDATE SET lat = EXCLUDED.lat, lon = EXCLUDED.lon, updated_at = EXCLUDED.updated_at,
				open_to_wingman = EXCLUDED.open_to_wingman, score = EXCLUDED.score
			RETURNING lat, lon, updated_at`, loc.UserID, loc.Lat, loc.Lon).Scan(&loc.Lat, &loc.Lon, &loc.UpdatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: user %d: %w", loc.UserID, store.ErrNotFound)
		}
		return err
	})
	loc.UpdatedAt = loc.UpdatedAt.UTC()
	return loc, err
}

// matchSQL finds and ranks wingmen in one round trip. From the caller's
// location it derives a bounding box of the radius (the whole longitude
// range near the poles and the antimeridian), reads the box from the
// partial covering index locations_wingman_geo_idx (a latitude band of
// the index, longitude checked on its entries, an index-only scan once
// vacuumed), computes exact haversine distances and the rank of
// store.MatchRank, keeps the top $7 — and only then joins users for the
// names. No row: the caller has no location; one row with a NULL
// candidate: located, but nobody nearby.
const matchSQL = `WITH me AS (
	SELECT lat, lon, score, $2::float8 / ($3::float8 * pi() / 180) AS dlat
	FROM locations WHERE user_id = $1
), box AS (
	SELECT me.*, CASE WHEN lat - dlat <= -89 OR lat + dlat >= 89 THEN NULL
		ELSE dlat / cos(radians(greatest(abs(lat - dlat), abs(lat + dlat)))) END AS dlon
	FROM me
), bounds AS (
	SELECT box.*,
		CASE WHEN dlon IS NULL OR lon - dlon < -180 OR lon + dlon > 180 THEN -180 ELSE lon - dlon END AS lon_min,
		CASE WHEN dlon IS NULL OR lon - dlon < -180 OR lon + dlon > 180 THEN 180 ELSE lon + dlon END AS lon_max
	FROM box
)
SELECT c.user_id, u.name, u.city, c.score, c.km, c.rank
FROM bounds b
LEFT JOIN LATERAL (
	SELECT m.user_id, m.score, m.km,
		$4::float8 * (m.km / $2) + $5::float8 * least(1.0, abs(b.score - m.score) / $6::float8) AS rank
	FROM (
		SELECT l.user_id, l.score, 2 * $3::float8 * asin(least(1.0, sqrt(
			power(sin(radians(l.lat - b.lat) / 2), 2) +
			cos(radians(b.lat)) * cos(radians(l.lat)) * power(sin(radians(l.lon - b.lon) / 2), 2)))) AS km
		FROM locations l
		WHERE l.open_to_wingman AND l.lat BETWEEN b.lat - b.dlat AND b.lat + b.dlat
			AND l.lon BETWEEN b.lon_min AND b.lon_max AND l.user_id <> $1
	) m
	WHERE m.km <= $2
	ORDER BY rank, m.user_id
	LIMIT $7
) c ON true
LEFT JOIN users u ON u.id = c.user_id
ORDER BY c.rank, c.user_id`

// matchArgs returns matchSQL's arguments.
func matchArgs(userID int64, radiusKM float64, limit int) []any {
	return []any{userID, radiusKM, store.EarthRadiusKM, store.RankDistanceWeight, store.RankReputationWeight,
		store.RankReputationScale, limit}
}

// FindMatches implements store.Store.
func (s *Store) FindMatches(ctx context.Context, q store.MatchQuery) ([]store.Match, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	out := []store.Match{}
	err := s.run(ctx, "matches.find", true, func(ctx context.Context, c *pgxpool.Conn) error {
		out = out[:0]
		rows, err := c.Query(ctx, matchSQL, matchArgs(q.UserID, q.RadiusKM, q.Limit)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		located := false
		for rows.Next() {
			located = true
			var (
				id         *int64
				name, city *string
				score      *int
				km, rank   *float64
			)
			if err := rows.Scan(&id, &name, &city, &score, &km, &rank); err != nil {
				return err
			}
			if id == nil || name == nil {
				continue // located, nobody nearby (or a user deleted meanwhile)
			}
			out = append(out, store.Match{UserID: *id, Name: *name, City: *city, Score: *score,
				Level: store.Level(*score), DistanceKM: *km, Rank: *rank})
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !located {
			return fmt.Errorf("pgstore: location of user %d: %w", q.UserID, store.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateChatSession implements store.ChatStore.
func (s *Store) CreateChatSession(ctx context.Context, userID int64, title string) (store.ChatSession, error) {
	cs := store.ChatSession{ID: store.NewSessionID(), UserID: userID, Title: title}
	err := s.run(ctx, "chat.session.create", true, func(ctx context.Context, c *pgxpool.Conn) error {
		// The id is chosen here, so a retry after a lost reply is harmless.
		return c.QueryRow(ctx, `INSERT INTO chat_sessions (id, user_id, title) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title RETURNING created_at`, cs.ID, userID, title).Scan(&cs.CreatedAt)
	})
	if err != nil {
		return store.ChatSession{}, err
	}
	cs.CreatedAt = cs.CreatedAt.UTC()
	return cs, nil
}

// GetChatSession implements store.ChatStore.
func (s *Store) GetChatSession(ctx context.Context, id string) (store.ChatSession, error) {
	cs := store.ChatSession{ID: id}
	err := s.run(ctx, "chat.session.get", true, func(ctx context.Context, c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, `SELECT user_id, title, created_at FROM chat_sessions WHERE id = $1`, id).
			Scan(&cs.UserID, &cs.Title, &cs.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: chat session %q: %w", id, store.ErrNotFound)
		}
		return err
	})
	cs.CreatedAt = cs.CreatedAt.UTC()
	return cs, err
}

// ListChatSessions implements store.ChatStore.
func (s *Store) ListChatSessions(ctx context.Context, userID int64, limit int) ([]store.ChatSession, error) {
	var out []store.ChatSession
	err := s.run(ctx, "chat.session.list", true, func(ctx context.Context, c *pgxpool.Conn) error {
		out = out[:0]
		rows, err := c.Query(ctx, `SELECT id, title, created_at FROM chat_sessions WHERE user_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`, userID, max(limit, 0))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			cs := store.ChatSession{UserID: userID}
			if err := rows.Scan(&cs.ID, &cs.Title, &cs.CreatedAt); err != nil {
				return err
			}
			cs.CreatedAt = cs.CreatedAt.UTC()
			out = append(out, cs)
		}
		return rows.Err()
	})
	return out, err
}

const messageCols = `session_id, role, text, tokens, tier, provider, model, input_tokens, output_tokens,
	cache_read_tokens, cache_write_tokens, cost_usd, baseline_cost_usd, context_tokens, baseline_context_tokens,
	latency_ms, status`

// AppendChatMessage implements store.ChatStore. It is not retried after
// the statement may have reached the server (a retry could duplicate it).
func (s *Store) AppendChatMessage(ctx context.Context, m *store.ChatMessage) error {
	if !store.ValidRole(m.Role) {
		return store.Invalid("role", "must be user, assistant or system")
	}
	return s.run(ctx, "chat.message.append", false, func(ctx context.Context, c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, `INSERT INTO chat_messages (`+messageCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
			RETURNING id, created_at`,
			m.SessionID, m.Role, m.Text, m.Tokens, m.Tier, m.Provider, m.Model, m.InputTokens, m.OutputTokens,
			m.CacheReadTokens, m.CacheWriteTokens, m.CostUSD, m.BaselineCostUSD, m.ContextTokens, m.BaselineContextTokens,
			m.LatencyMS, m.Status).Scan(&m.ID, &m.CreatedAt)
		m.CreatedAt = m.CreatedAt.UTC()
		if err != nil && errors.Is(s.mapErr("", err), store.ErrNotFound) {
			return fmt.Errorf("pgstore: chat session %q: %w", m.SessionID, store.ErrNotFound)
		}
		return err
	})
}

// ListChatMessages implements store.ChatStore.
func (s *Store) ListChatMessages(ctx context.Context, sessionID string, afterID int64, limit int) ([]store.ChatMessage, error) {
	if limit < 1 || limit > store.MaxChatPage {
		return nil, store.Invalid("limit", "must be between 1 and 1000")
	}
	out := []store.ChatMessage{}
	err := s.run(ctx, "chat.message.list", true, func(ctx context.Context, c *pgxpool.Conn) error {
		out = out[:0]
		b := &pgx.Batch{}
		b.Queue(`SELECT 1 FROM chat_sessions WHERE id = $1`, sessionID).QueryRow(func(row pgx.Row) error {
			var one int
			err := row.Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("pgstore: chat session %q: %w", sessionID, store.ErrNotFound)
			}
			return err
		})
		b.Queue(`SELECT id, created_at, `+messageCols+` FROM chat_messages
			WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3`, sessionID, afterID, limit).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var m store.ChatMessage
				if err := rows.Scan(&m.ID, &m.CreatedAt, &m.SessionID, &m.Role, &m.Text, &m.Tokens, &m.Tier, &m.Provider,
					&m.Model, &m.InputTokens, &m.OutputTokens, &m.CacheReadTokens, &m.CacheWriteTokens, &m.CostUSD,
					&m.BaselineCostUSD, &m.ContextTokens, &m.BaselineContextTokens, &m.LatencyMS, &m.Status); err != nil {
					return err
				}
				m.CreatedAt = m.CreatedAt.UTC()
				out = append(out, m)
			}
			return rows.Err()
		})
		return c.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetChatSummary implements store.ChatStore.
func (s *Store) GetChatSummary(ctx context.Context, sessionID string) (store.ChatSummary, error) {
	sum := store.ChatSummary{SessionID: sessionID}
	err := s.run(ctx, "chat.summary.get", true, func(ctx context.Context, c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, `SELECT up_to_message_id, text, tokens, updated_at FROM chat_summaries WHERE session_id = $1`,
			sessionID).Scan(&sum.UpToMessageID, &sum.Text, &sum.Tokens, &sum.UpdatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: summary of chat session %q: %w", sessionID, store.ErrNotFound)
		}
		return err
	})
	sum.UpdatedAt = sum.UpdatedAt.UTC()
	return sum, err
}

// PutChatSummary implements store.ChatStore (an upsert).
func (s *Store) PutChatSummary(ctx context.Context, sum store.ChatSummary) error {
	return s.run(ctx, "chat.summary.put", true, func(ctx context.Context, c *pgxpool.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO chat_summaries (session_id, up_to_message_id, text, tokens, updated_at)
			VALUES ($1, $2, $3, $4, now())
			ON CONFLICT (session_id) DO UPDATE SET up_to_message_id = EXCLUDED.up_to_message_id,
				text = EXCLUDED.text, tokens = EXCLUDED.tokens, updated_at = EXCLUDED.updated_at`,
			sum.SessionID, sum.UpToMessageID, sum.Text, sum.Tokens)
		if err != nil && errors.Is(s.mapErr("", err), store.ErrNotFound) {
			return fmt.Errorf("pgstore: chat session %q: %w", sum.SessionID, store.ErrNotFound)
		}
		return err
	})
}
