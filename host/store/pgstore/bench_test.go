package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/store"
)

// benchUsers is the size of the benchmark database.
const benchUsers = 100_000

// benchCallers is how many goroutines call the store at once.
const benchCallers = 32

var bench struct {
	once    sync.Once
	url     string
	drop    func() error
	err     error
	located []int64 // users with a location
	seedDur time.Duration
}

// benchDB seeds one 100,000-user database for every benchmark of the run
// (once); TestMain drops it.
func benchDB(b *testing.B) string {
	b.Helper()
	bench.once.Do(func() {
		bench.url, bench.drop, bench.err = createDB()
		if bench.err != nil {
			return
		}
		s, err := Open(context.Background(), Config{URL: bench.url})
		if err != nil {
			bench.err = err
			return
		}
		defer s.Close()
		ctx := context.Background()
		if _, err := s.Migrate(ctx); err != nil {
			bench.err = err
			return
		}
		rep, err := s.Seed(ctx, SeedOptions{Users: benchUsers})
		if err != nil {
			bench.err = err
			return
		}
		bench.seedDur = rep.Duration
		rows, err := s.pool.Query(ctx, "SELECT user_id FROM locations ORDER BY user_id")
		if err != nil {
			bench.err = err
			return
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				bench.err = err
				return
			}
			bench.located = append(bench.located, id)
		}
		bench.err = rows.Err()
		fmt.Fprintf(os.Stderr, "bench setup: seeded %d users (%d located) in %v\n", rep.Users, len(bench.located), rep.Duration.Round(time.Millisecond))
	})
	if bench.err != nil {
		b.Fatalf("bench setup: %v", bench.err)
	}
	return bench.url
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.drop != nil {
		if err := bench.drop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// latencies collects per-call durations from many goroutines.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

func (l *latencies) pct(p float64) time.Duration {
	if len(l.all) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(l.all)-1))
	return l.all[i]
}

// poolSampler samples pool utilisation while a benchmark runs.
type poolSampler struct {
	s          *Store
	stop, done chan struct{}
	sum, peak  float64
	n          int
	last       store.PoolStats
}

func samplePool(s *Store) *poolSampler {
	p := &poolSampler{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				st := s.PoolStats()
				p.sum += st.Utilisation
				p.peak = max(p.peak, st.Utilisation)
				p.n++
			}
		}
	}()
	return p
}

func (p *poolSampler) finish() {
	close(p.stop)
	<-p.done
	p.last = p.s.PoolStats()
}

// runCallers runs b.N calls of op spread over benchCallers goroutines and
// reports P50/P95/P99, pool utilisation and the health score.
func runCallers(b *testing.B, s *Store, target time.Duration, op func(r *rand.Rand) error) {
	b.Helper()
	var lat latencies
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	sampler := samplePool(s)
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range benchCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			var mine []time.Duration
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				err := op(r)
				mine = append(mine, time.Since(t0))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
			lat.add(mine)
		}()
	}
	wg.Wait()
	b.StopTimer()
	sampler.finish()
	if e := firstErr.Load(); e != nil {
		b.Fatalf("%d of %d calls failed, first: %v", failed.Load(), b.N, e)
	}
	slices.Sort(lat.all)
	p50, p95, p99 := lat.pct(50), lat.pct(95), lat.pct(99)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95_ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99_ms")
	mean := 0.0
	if sampler.n > 0 {
		mean = sampler.sum / float64(sampler.n)
	}
	b.ReportMetric(mean, "pool_util_mean")
	b.ReportMetric(float64(sampler.last.Health), "health")
	verdict := "no target"
	switch {
	case target > 0 && p95 > target:
		verdict = fmt.Sprintf("target P95 ≤ %v: MISSES", target)
	case target > 0:
		verdict = fmt.Sprintf("target P95 ≤ %v: meets", target)
	}
	b.Logf("%d calls by %d callers: P50 %v P95 %v P99 %v (%s); pool max %d, utilisation mean %.2f peak %.2f, recent acquire wait %v, health %d/100",
		b.N, benchCallers, p50, p95, p99, verdict, sampler.last.Max, mean, sampler.peak,
		sampler.last.RecentAcquireWait, sampler.last.Health)
}

func benchStore(b *testing.B) *Store { return benchStoreConfig(b, Config{URL: benchDB(b)}) }

func benchStoreConfig(b *testing.B, cfg Config) *Store {
	s, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	s.migrated.Store(true)
	// Warm the pool to its size so the first calls do not pay connects.
	var wg sync.WaitGroup
	for range s.cfg.MaxConns {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Ping(context.Background()) }()
	}
	wg.Wait()
	return s
}

// BenchmarkMatches100k: wingman matches for random located users (10 km,
// 20 results) by 32 concurrent callers through the pool.
func BenchmarkMatches100k(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	runCallers(b, s, 50*time.Millisecond, func(r *rand.Rand) error {
		id := bench.located[r.IntN(len(bench.located))]
		_, err := s.FindMatches(ctx, store.MatchQuery{UserID: id, RadiusKM: 10, Limit: 20})
		return err
	})
}

// BenchmarkMatches100kNoIndexBaseline is the same workload with index
// scans disabled for the pool's sessions: the baseline that shows what
// locations_wingman_geo_idx buys.
func BenchmarkMatches100kNoIndexBaseline(b *testing.B) {
	u, err := url.Parse(benchDB(b))
	if err != nil {
		b.Fatal(err)
	}
	// %20, not "+": the options value is read without form decoding.
	u.RawQuery += "&options=" + strings.ReplaceAll(url.QueryEscape(
		"-c enable_indexscan=off -c enable_bitmapscan=off -c enable_indexonlyscan=off"), "+", "%20")
	// Sequential scans under 32 callers can exceed the default 2 s.
	s := benchStoreConfig(b, Config{URL: u.String(), OpTimeout: time.Minute})
	ctx := context.Background()
	runCallers(b, s, 0, func(r *rand.Rand) error {
		id := bench.located[r.IntN(len(bench.located))]
		_, err := s.FindMatches(ctx, store.MatchQuery{UserID: id, RadiusKM: 10, Limit: 20})
		return err
	})
}

// BenchmarkChallengesList100k: catalogue pages with random filters and
// cursors by 32 concurrent callers.
func BenchmarkChallengesList100k(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	runCallers(b, s, 10*time.Millisecond, func(r *rand.Rand) error {
		f := store.ChallengeFilter{Limit: 20, After: int64(r.IntN(150))}
		if r.IntN(2) == 0 {
			f.Category = store.Categories[r.IntN(len(store.Categories))]
		}
		if r.IntN(3) == 0 {
			f.Difficulty = store.Difficulties[r.IntN(len(store.Difficulties))]
		}
		_, err := s.ListChallenges(ctx, f)
		return err
	})
}

// BenchmarkReputation100k: reputation reads (one batched round trip);
// informational, no target.
func BenchmarkReputation100k(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	runCallers(b, s, 0, func(r *rand.Rand) error {
		_, err := s.GetReputation(ctx, 1+r.Int64N(benchUsers), 10)
		return err
	})
}

// explainMatch returns the JSON plan of the matching query for userID.
func explainMatch(ctx context.Context, s *Store, userID int64, analyze bool) (string, error) {
	opts := "FORMAT JSON"
	if analyze {
		opts += ", ANALYZE"
	}
	var plan []byte
	err := s.pool.QueryRow(ctx, "EXPLAIN ("+opts+") "+matchSQL, matchArgs(userID, 10, 20)...).Scan(&plan)
	return string(plan), err
}

// planNodes flattens an EXPLAIN (FORMAT JSON) plan into "Node Type/Index
// Name/Relation Name" strings.
func planNodes(plan string) ([]string, error) {
	var doc []struct{ Plan map[string]any }
	if err := json.Unmarshal([]byte(plan), &doc); err != nil {
		return nil, err
	}
	var out []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		s := fmt.Sprint(n["Node Type"])
		if v, ok := n["Index Name"]; ok {
			s += " using " + fmt.Sprint(v)
		}
		if v, ok := n["Relation Name"]; ok {
			s += " on " + fmt.Sprint(v)
		}
		out = append(out, s)
		if kids, ok := n["Plans"].([]any); ok {
			for _, k := range kids {
				if m, ok := k.(map[string]any); ok {
					walk(m)
				}
			}
		}
	}
	for _, d := range doc {
		walk(d.Plan)
	}
	return out, nil
}

// checkMatchPlan checks with EXPLAIN that matching reads locations
// through locations_wingman_geo_idx, never with a sequential scan, for a
// few located users of a seeded database.
func checkMatchPlan(t *testing.T, s *Store) {
	ctx := context.Background()
	var ids []int64
	rows, err := s.pool.Query(ctx, `SELECT user_id FROM locations ORDER BY user_id LIMIT 5`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) == 0 {
		t.Fatalf("no located users: %v", err)
	}
	for _, id := range ids {
		plan, err := explainMatch(ctx, s, id, false)
		if err != nil {
			t.Fatalf("EXPLAIN: %v", err)
		}
		nodes, err := planNodes(plan)
		if err != nil {
			t.Fatalf("parse plan: %v\n%s", err, plan)
		}
		joined := strings.Join(nodes, " | ")
		if !strings.Contains(joined, "using locations_wingman_geo_idx") {
			t.Fatalf("user %d: plan does not use locations_wingman_geo_idx: %s", id, joined)
		}
		if strings.Contains(joined, "Seq Scan on locations") || strings.Contains(joined, "Seq Scan on users") {
			t.Fatalf("user %d: plan has a sequential scan: %s", id, joined)
		}
		t.Logf("user %d: %s", id, joined)
	}
}
