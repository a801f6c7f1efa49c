package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/seed"
)

func TestSeedIsConsistentAndDeterministic(t *testing.T) {
	s := openTestStore(t, Config{})
	ctx := context.Background()
	const n = 2000
	before := schemaSignature(t, s)
	rep, err := s.Seed(ctx, SeedOptions{Users: n})
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if after := schemaSignature(t, s); after != before {
		t.Fatalf("seeding changed the schema:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if rep.Users != n || rep.Locations < n*8/10 || rep.Completions < n || rep.Reputation < n/2 {
		t.Fatalf("report = %+v", rep)
	}
	// Totals agree across users, completions and reputation.
	var bad int
	err = s.pool.QueryRow(ctx, `SELECT count(*) FROM users u WHERE u.score <>
		COALESCE((SELECT sum(points) FROM completions c WHERE c.user_id = u.id), 0)
		OR u.score <> COALESCE((SELECT sum(score) FROM reputation r WHERE r.user_id = u.id), 0)`).Scan(&bad)
	if err != nil || bad != 0 {
		t.Fatalf("%d users with inconsistent scores (err %v)", bad, err)
	}
	// The matching read model agrees with users.
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM locations l JOIN users u ON u.id = l.user_id
		WHERE l.score <> u.score OR l.open_to_wingman <> u.open_to_wingman`).Scan(&bad); err != nil || bad != 0 {
		t.Fatalf("%d locations disagree with their users (err %v)", bad, err)
	}
	// Reputations vary, and the data matches the generator.
	var distinct int
	if err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT score) FROM users`).Scan(&distinct); err != nil || distinct < 100 {
		t.Fatalf("%d distinct scores (err %v); want varied reputations", distinct, err)
	}
	want := seed.New(seed.DefaultSeed).User(777)
	got, err := s.GetUser(ctx, 777)
	if err != nil || got.Name != want.User.Name || got.City != want.User.City || !got.CreatedAt.Equal(want.User.CreatedAt) {
		t.Fatalf("user 777 = %+v, %v; want %+v", got, err, want.User)
	}
	r, err := s.GetReputation(ctx, 777, 5)
	if err != nil || r.Score != want.Score {
		t.Fatalf("reputation of 777 = %+v, %v; want score %d", r, err, want.Score)
	}
	// New users continue after the seeded ids.
	u, err := s.CreateUser(ctx, store.User{Name: "after seed"})
	if err != nil || u.ID != n+1 {
		t.Fatalf("CreateUser after seed = %+v, %v; want id %d", u, err, n+1)
	}
	// Seeding again needs Reset.
	if _, err := s.Seed(ctx, SeedOptions{Users: 10}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Seed over existing users err = %v, want ErrConflict", err)
	}
	if rep, err := s.Seed(ctx, SeedOptions{Users: 10, Reset: true}); err != nil || rep.Users != 10 {
		t.Fatalf("Seed with Reset = %+v, %v", rep, err)
	}
}

// TestSeed100kUsersUnder60s seeds the benchmark's 100,000 users and
// checks the stated target. It is the one timed assertion of this package
// because 60 s is the requirement itself, several times what the machine
// needs even under the race detector. On the seeded database it then
// checks that the matching query's plan uses the index.
func TestSeed100kUsersUnder60s(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 100,000 users; skipped with -short")
	}
	s := openTestStore(t, Config{})
	rep, err := s.Seed(context.Background(), SeedOptions{Users: 100_000})
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	t.Logf("seeded %d users, %d locations, %d completions, %d reputation rows in %v",
		rep.Users, rep.Locations, rep.Completions, rep.Reputation, rep.Duration.Round(time.Millisecond))
	if rep.Users != 100_000 {
		t.Fatalf("seeded %d users", rep.Users)
	}
	if rep.Duration >= 60*time.Second {
		t.Errorf("seeding 100,000 users took %v, target < 60 s", rep.Duration)
	}
	t.Run("MatchQueryUsesIndex", func(t *testing.T) { checkMatchPlan(t, s) })
}

// schemaSignature lists every constraint and index of the schema.
func schemaSignature(t *testing.T, s *Store) string {
	t.Helper()
	var sig string
	err := s.pool.QueryRow(context.Background(), `SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS x
		FROM pg_constraint WHERE connamespace = 'public'::regnamespace
		UNION ALL
		SELECT tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public') s`).Scan(&sig)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
