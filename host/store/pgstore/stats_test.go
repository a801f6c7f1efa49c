package pgstore

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/store"
)

func TestHealthScore(t *testing.T) {
	for _, tc := range []struct {
		name      string
		util      float64
		wait      time.Duration
		canceled  int64
		reachable bool
		want      int
	}{
		{"idle", 0, 0, 0, true, 100},
		{"busy but not saturated", 0.75, 0, 0, true, 100},
		{"saturated", 1, 0, 0, true, 60},
		{"half-way to saturated", 0.875, 0, 0, true, 80},
		{"5 ms mean wait", 0.5, 5 * time.Millisecond, 0, true, 90},
		{"wait penalty capped", 0.5, time.Second, 0, true, 60},
		{"canceled acquires", 0.5, 0, 2, true, 90},
		{"everything bad", 1, time.Second, 100, true, 0},
		{"unreachable", 0, 0, 0, false, 0},
	} {
		if got := HealthScore(tc.util, tc.wait, tc.canceled, tc.reachable); got != tc.want {
			t.Errorf("%s: HealthScore = %d, want %d", tc.name, got, tc.want)
		}
	}
}

type recordingObserver struct {
	mu    sync.Mutex
	names map[string]int
	errs  int
}

func (o *recordingObserver) ObserveQuery(name string, d time.Duration, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.names == nil {
		o.names = map[string]int{}
	}
	o.names[name]++
	if outcome != "ok" {
		o.errs++
	}
	if d <= 0 {
		o.names["non-positive duration"]++
	}
}

func TestQueryTracerNamesQueries(t *testing.T) {
	obs := &recordingObserver{}
	s := openTestStore(t, Config{Observer: obs})
	ctx := context.Background()
	u, err := s.CreateUser(ctx, store.User{Name: "Tracer", OpenToWingman: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutLocation(ctx, store.Location{UserID: u.ID, Lat: 1, Lon: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindMatches(ctx, store.MatchQuery{UserID: u.ID, RadiusKM: 5, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListChallenges(ctx, store.ChallengeFilter{Limit: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetReputation(ctx, u.ID, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(ctx, 1<<60); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for _, name := range []string{"users.create", "location.put", "matches.find",
		"challenges.list", "reputation.get", "users.get"} {
		if obs.names[name] == 0 {
			t.Errorf("no duration observed for %q (observed %v)", name, obs.names)
		}
	}
	if obs.names["non-positive duration"] > 0 || obs.names["unnamed"] > 0 {
		t.Errorf("observed %v", obs.names)
	}
}

func TestPoolStats(t *testing.T) {
	s := openTestStore(t, Config{MaxConns: 4})
	ctx := context.Background()
	for range 10 {
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := s.PoolStats()
	c.Release()
	if st.Max != 4 || st.Acquired != 1 || st.Utilisation != 0.25 || st.AcquireCount < 10 || !st.Reachable || st.Health < 80 {
		t.Fatalf("PoolStats = %+v", st)
	}
}

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	s, err := Open(context.Background(), Config{
		URL:       "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		OpTimeout: 500 * time.Millisecond, AcquireTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Open must succeed while the database is down: %v", err)
	}
	defer s.Close()
	t0 := time.Now()
	_, err = s.GetChallenge(context.Background(), 1)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("took %v with a 500 ms operation timeout", d)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping err = %v, want ErrUnavailable", err)
	}
	if st := s.PoolStats(); st.Reachable || st.Health != 0 {
		t.Fatalf("PoolStats while down = %+v, want unreachable with health 0", st)
	}
}

func TestPoolSettings(t *testing.T) {
	const base = "postgres://postgres@127.0.0.1:1/x?sslmode=disable"
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantMax int32
		wantMin int32
	}{
		{"defaults", Config{URL: base}, max(8, 4*int32(runtime.GOMAXPROCS(0))), 2},
		{"URL parameters win over defaults", Config{URL: base + "&pool_max_conns=3&pool_min_conns=1"}, 3, 1},
		{"explicit fields win over the URL", Config{URL: base + "&pool_max_conns=3", MaxConns: 5}, 5, 2},
		{"min never above max", Config{URL: base + "&pool_max_conns=1"}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := s.Config()
			if c.MaxConns != tc.wantMax || c.MinConns != tc.wantMin || s.pool.Config().MaxConns != tc.wantMax {
				t.Fatalf("max %d min %d, want %d %d", c.MaxConns, c.MinConns, tc.wantMax, tc.wantMin)
			}
		})
	}
}
