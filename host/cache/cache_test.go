package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

func init() { SilenceRedisLogs() }

func newTestCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = testPrefix(t)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// origin is a fake origin counting its calls.
type origin struct {
	calls  atomic.Int64
	delay  time.Duration
	status int
	body   func(n int64) string
	fail   atomic.Bool
}

func (o *origin) fill(ctx context.Context) (*Entry, error) {
	n := o.calls.Add(1)
	if o.delay > 0 {
		time.Sleep(o.delay)
	}
	if o.fail.Load() {
		return nil, errors.New("origin down")
	}
	st := o.status
	if st == 0 {
		st = 200
	}
	b := fmt.Sprintf("body-%d", n)
	if o.body != nil {
		b = o.body(n)
	}
	return &Entry{Status: st, ContentType: "application/json", Body: []byte(b)}, nil
}

func req(c *Cache, user, key string, o *origin, ttl, stale time.Duration, tags ...string) *Request {
	return &Request{Key: c.Key(user, key), Route: "/r", TTL: ttl, Stale: stale, Tags: tags, Fill: o.fill}
}

func TestEntryCodecRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
	}{
		{"plain", Entry{Status: 200, ContentType: "application/json", Body: []byte(`{"a":1}`), TTL: time.Minute, Stale: time.Second, Tags: []string{"user:1", "challenges"}, ETag: ETagOf("application/json", []byte(`{"a":1}`))}},
		{"empty", Entry{Status: 200}},
		{"binary body", Entry{Status: 200, Body: []byte{0, 1, 2, 255}, TTL: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.e.Created = time.UnixMilli(1_700_000_000_123)
			got, err := decodeEntry(encodeEntry(&tt.e))
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.e.Status || got.ContentType != tt.e.ContentType || !bytes.Equal(got.Body, tt.e.Body) ||
				!got.Created.Equal(tt.e.Created) || got.TTL != tt.e.TTL || got.Stale != tt.e.Stale || got.ETag != tt.e.ETag ||
				strings.Join(got.Tags, ",") != strings.Join(tt.e.Tags, ",") {
				t.Fatalf("round trip: got %+v want %+v", got, tt.e)
			}
		})
	}
	if _, err := decodeEntry([]byte("X1")); err == nil {
		t.Fatal("bad magic decoded")
	}
	// An entry of format 1 (no entity tag) is not read as format 2.
	old := encodeEntry(&Entry{Status: 200, Body: []byte("x")})
	old[1] = 1
	if _, err := decodeEntry(old); err == nil {
		t.Fatal("a format 1 entry decoded")
	}
	// An entity tag that could not be sent in a header is refused, from
	// Redis as on the way in.
	for _, bad := range []string{`"a"b"`, "\"a\r\nX: y\"", `abc`, `"` + strings.Repeat("a", 200) + `"`, `W/"a"`} {
		b := encodeEntry(&Entry{Status: 200, ETag: `"ok"`, Body: []byte("x"), Created: time.UnixMilli(1)})
		i := bytes.Index(b, []byte(`"ok"`))
		forged := append(append(append([]byte(nil), b[:i-1]...), byte(len(bad))), bad...)
		forged = append(forged, b[i+4:]...)
		if e, err := decodeEntry(forged); err == nil && len(bad) < 256 {
			t.Fatalf("entity tag %q decoded as %q", bad, e.ETag)
		}
		if e, _ := decodeEntry(encodeEntry(&Entry{Status: 200, ETag: bad, Created: time.UnixMilli(1)})); e == nil || e.ETag != "" {
			t.Fatalf("entity tag %q was stored", bad)
		}
	}
}

// TestETagStoredOnce: a filled entry gets its strong ETag when stored,
// the same for the same bytes, another for other bytes; a refresh with
// new bytes changes it.
func TestETagStoredOnce(t *testing.T) {
	c := newTestCache(t, Config{})
	body := "v1"
	fill := func(context.Context) (*Entry, error) {
		return &Entry{Status: 200, ContentType: "text/plain", Body: []byte(body)}, nil
	}
	r := &Request{Key: c.Key("", "k"), Route: "/r", TTL: time.Minute, Fill: fill}
	res, err := c.Get(context.Background(), r)
	if err != nil || res.Entry.ETag != ETagOf("text/plain", []byte("v1")) || !validETag(res.Entry.ETag) {
		t.Fatalf("first fill: %v ETag %q", err, res.Entry.ETag)
	}
	hit, _ := c.Get(context.Background(), r)
	if hit.Entry.ETag != res.Entry.ETag || hit.Event != EventHit {
		t.Fatalf("hit ETag %q, want %q", hit.Entry.ETag, res.Entry.ETag)
	}
	if ETagOf("text/plain", []byte("v2")) == res.Entry.ETag || ETagOf("text/html", []byte("v1")) == res.Entry.ETag {
		t.Fatal("other bytes or another content type share the ETag")
	}
}

func TestKeyTag(t *testing.T) {
	a, b := KeyTag("/api/challenges?limit=5"), KeyTag("/api/challenges?limit=6")
	if a == b || !validTag(a) || !strings.HasPrefix(a, "key:") || len(a) != 4+64 || KeyTag("/x\n") == "" {
		t.Fatalf("KeyTag: %q %q", a, b)
	}
	if !validTag(KeyTag("/api/chat/sessions/a\nb/cost")) || !validTag(KeyTag(strings.Repeat("x", 10000))) {
		t.Fatal("a key tag is not a valid tag")
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(&Entry{Status: 200, ContentType: "text/plain", Body: []byte("hi"), Tags: []string{"a"}}))
	f.Add([]byte{'W', 1})
	f.Add([]byte{'W', 1, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255})
	f.Add(encodeEntry(&Entry{Status: 200, ETag: ETagOf("a", []byte("b")), Body: []byte("b"), Tags: []string{"x", "y"}}))
	f.Add([]byte{'W', 2, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, '"', 'a', '"', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		again, err := decodeEntry(encodeEntry(e))
		if err != nil {
			t.Fatalf("re-encoding a decoded entry fails: %v", err)
		}
		if e.ETag != "" && !validETag(e.ETag) {
			t.Fatalf("decoded an entity tag that cannot be sent: %q", e.ETag)
		}
		if !bytes.Equal(again.Body, e.Body) || again.Status != e.Status || len(again.Tags) != len(e.Tags) || again.ETag != e.ETag {
			t.Fatalf("re-encoding changed the entry")
		}
	})
}

func FuzzDecodePurge(f *testing.F) {
	f.Add(encodePurge("abc", []string{"user:1", "challenges"}))
	f.Add("1\nx\n")
	f.Add("2\nx\ny")
	f.Fuzz(func(t *testing.T, msg string) {
		inst, tags, ok := decodePurge(msg)
		if !ok {
			return
		}
		for _, tg := range tags {
			if !validTag(tg) {
				t.Fatalf("invalid tag %q accepted", tg)
			}
		}
		i2, t2, ok := decodePurge(encodePurge(inst, tags))
		if !ok || i2 != inst || strings.Join(t2, "\n") != strings.Join(tags, "\n") {
			t.Fatalf("purge message does not round trip: %q", msg)
		}
	})
}

func TestKeyScopes(t *testing.T) {
	c := newTestCache(t, Config{})
	keys := map[string]string{}
	for _, k := range []struct{ user, key string }{
		{"", "a"}, {"1", "a"}, {"12", "a"}, {"1", "2:a"}, {"1:2", "a"}, {"", "u:1:1:a"}, {"2", "a"},
	} {
		full := c.Key(k.user, k.key)
		if prev, dup := keys[full]; dup {
			t.Fatalf("key %q for %+v collides with %s", full, k, prev)
		}
		keys[full] = fmt.Sprint(k)
		if k.user != "" && !strings.Contains(full, ":"+k.user+":") {
			t.Fatalf("user-scoped key %q does not contain the user %q", full, k.user)
		}
		if !strings.Contains(full, ":"+FormatVersion+":") {
			t.Fatalf("key %q has no format version", full)
		}
	}
}

func TestHitMissAndStorePolicy(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		size      int
		wantCalls int64
	}{
		{"200 stored", 200, 10, 1},
		{"404 not stored", 404, 10, 3},
		{"500 not stored", 500, 10, 3},
		{"oversized not stored", 200, 2048, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, Config{MaxEntryBytes: 1024})
			o := &origin{status: tt.status, body: func(int64) string { return strings.Repeat("x", tt.size) }}
			var events []Event
			for range 3 {
				r, err := c.Get(context.Background(), req(c, "", "k", o, time.Minute, 0))
				if err != nil {
					t.Fatal(err)
				}
				if r.Entry.Status != tt.status {
					t.Fatalf("status %d", r.Entry.Status)
				}
				events = append(events, r.Event)
			}
			if got := o.calls.Load(); got != tt.wantCalls {
				t.Fatalf("origin calls = %d, want %d (events %v)", got, tt.wantCalls, events)
			}
			if tt.wantCalls == 1 && (events[0] != EventMiss || events[1] != EventHit || events[2] != EventHit) {
				t.Fatalf("events %v", events)
			}
		})
	}
}

// TestCoalescing: 1,000 concurrent misses on one cold key make exactly one
// origin call, with and without the Redis tier.
func TestCoalescing(t *testing.T) {
	rs := testkit.StartRedis(t)
	for _, withRedis := range []bool{false, true} {
		t.Run(fmt.Sprintf("redis=%v", withRedis), func(t *testing.T) {
			cfg := Config{}
			if withRedis {
				cfg.Redis = redisClient(t, rs)
			}
			c := newTestCache(t, cfg)
			o := &origin{delay: 100 * time.Millisecond}
			const n = 1000
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, n)
			bodies := make(chan string, n)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r, err := c.Get(context.Background(), req(c, "", "cold", o, time.Minute, 0))
					if err != nil {
						errs <- err
						return
					}
					bodies <- string(r.Entry.Body)
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			close(bodies)
			for err := range errs {
				t.Fatal(err)
			}
			for b := range bodies {
				if b != "body-1" {
					t.Fatalf("caller got %q", b)
				}
			}
			if got := o.calls.Load(); got != 1 {
				t.Fatalf("origin calls = %d, want 1", got)
			}
			t.Logf("coalesced waiters: %d", c.Stats().Coalesced)
		})
	}
}

// TestCancellationFailsNoOther: the caller whose fill is running gives up;
// every other caller still gets the response, and it is stored.
func TestCancellationFailsNoOther(t *testing.T) {
	c := newTestCache(t, Config{})
	release := make(chan struct{})
	var calls atomic.Int64
	fill := func(ctx context.Context) (*Entry, error) {
		calls.Add(1)
		<-release
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return &Entry{Status: 200, Body: []byte("ok")}, nil
	}
	r := &Request{Key: c.Key("", "k"), TTL: time.Minute, Fill: fill}
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Get(leaderCtx, r)
		leaderErr <- err
	}()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	const n = 50
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Get(context.Background(), &Request{Key: r.Key, TTL: time.Minute, Fill: fill})
			if err != nil || string(res.Entry.Body) != "ok" {
				failed.Add(1)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: err = %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d other callers failed after the leader's cancellation", failed.Load(), n)
	}
	if calls.Load() != 1 {
		t.Fatalf("origin calls = %d, want 1", calls.Load())
	}
	res, err := c.Get(context.Background(), r)
	if err != nil || res.Event != EventHit {
		t.Fatalf("after the fill: %v %v, want a hit", res.Event, err)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	c := newTestCache(t, Config{})
	o := &origin{}
	gate := make(chan struct{})
	var refreshCalls atomic.Int64
	r := req(c, "", "k", o, 30*time.Millisecond, time.Minute)
	r.Refresh = func(ctx context.Context) (*Entry, error) {
		refreshCalls.Add(1)
		<-gate
		return o.fill(ctx)
	}
	if res, _ := c.Get(context.Background(), r); res.Event != EventMiss {
		t.Fatalf("first get: %v", res.Event)
	}
	time.Sleep(40 * time.Millisecond)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Get(context.Background(), r)
			if err != nil || res.Event != EventStale || string(res.Entry.Body) != "body-1" {
				t.Errorf("stale get: %v %v %q", res.Event, err, res.Entry.Body)
			}
		}()
	}
	wg.Wait()
	close(gate)
	waitFor(t, func() bool { res, _ := c.Get(context.Background(), r); return res.Event == EventHit })
	if got := refreshCalls.Load(); got != 1 {
		t.Fatalf("refreshes = %d, want exactly 1", got)
	}
	res, _ := c.Get(context.Background(), r)
	if string(res.Entry.Body) != "body-2" {
		t.Fatalf("after refresh: %q", res.Entry.Body)
	}

	// The origin fails: the stale copy keeps being served.
	o.fail.Store(true)
	r.Refresh = nil
	time.Sleep(40 * time.Millisecond)
	for range 5 {
		res, err := c.Get(context.Background(), r)
		if err != nil || res.Event != EventStale || string(res.Entry.Body) != "body-2" {
			t.Fatalf("origin down: %v %v", res.Event, err)
		}
	}
	waitFor(t, func() bool { return c.Stats().RefreshFailures > 0 })
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestPurgeLocal(t *testing.T) {
	c := newTestCache(t, Config{})
	o := &origin{}
	a := req(c, "1", "rep", o, time.Minute, time.Minute, "user:1")
	b := req(c, "2", "rep", o, time.Minute, time.Minute, "user:2")
	for _, r := range []*Request{a, b, a, b} {
		if _, err := c.Get(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if o.calls.Load() != 2 {
		t.Fatalf("calls %d", o.calls.Load())
	}
	c.Purge(context.Background(), "user:1")
	if res, _ := c.Get(context.Background(), a); res.Event != EventMiss {
		t.Fatalf("purged entry served: %v", res.Event)
	}
	if res, _ := c.Get(context.Background(), b); res.Event != EventHit {
		t.Fatalf("unrelated entry dropped: %v", res.Event)
	}
}

// TestPurgeDuringFill: an entry whose fill began before a purge of its tag
// is returned to its callers but not stored.
func TestPurgeDuringFill(t *testing.T) {
	c := newTestCache(t, Config{})
	started, release := make(chan struct{}), make(chan struct{})
	r := &Request{Key: c.Key("", "k"), TTL: time.Minute, Tags: []string{"t"}, Fill: func(context.Context) (*Entry, error) {
		close(started)
		<-release
		return &Entry{Status: 200, Body: []byte("old")}, nil
	}}
	done := make(chan struct{})
	go func() { defer close(done); _, _ = c.Get(context.Background(), r) }()
	<-started
	c.Purge(context.Background(), "t")
	close(release)
	<-done
	o := &origin{}
	res, err := c.Get(context.Background(), &Request{Key: r.Key, TTL: time.Minute, Tags: r.Tags, Fill: o.fill})
	if err != nil || res.Event != EventMiss {
		t.Fatalf("entry filled before the purge was stored: %v %v", res.Event, err)
	}
}

// TestTwoInstancesPurge: a purge on one instance drops the entry from the
// other's in-process tier through Redis pub/sub.
func TestTwoInstancesPurge(t *testing.T) {
	rs := testkit.StartRedis(t)
	prefix := testPrefix(t)
	a := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs)})
	b := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs)})
	time.Sleep(50 * time.Millisecond) // both subscribed
	o := &origin{}
	rb := req(b, "7", "loc", o, time.Hour, 0, "user:7:location")
	if res, _ := b.Get(context.Background(), rb); res.Event != EventMiss {
		t.Fatal("first read not a miss")
	}
	waitFor(t, func() bool {
		res, _ := a.Get(context.Background(), req(a, "7", "loc", &origin{}, time.Hour, 0, "user:7:location"))
		return res.Tier == TierRedis || res.Tier == TierLocal
	})
	if res, _ := b.Get(context.Background(), rb); res.Event != EventHit || res.Tier != TierLocal {
		t.Fatalf("b not warm: %v %v", res.Event, res.Tier)
	}
	before := b.Stats().PurgesReceived
	start := time.Now()
	a.Purge(context.Background(), "user:7:location")
	waitFor(t, func() bool { return b.Stats().PurgesReceived > before })
	lat := time.Since(start)
	t.Logf("purge on instance A honoured by instance B after %v", lat)
	if lat > time.Second {
		t.Fatalf("purge took %v to reach the other instance", lat)
	}
	res, _ := b.Get(context.Background(), rb)
	if res.Event != EventMiss || res.Tier != TierOrigin {
		t.Fatalf("purged entry still served by B: %v from %v", res.Event, res.Tier)
	}
}

// TestRedisOutage kills the Redis server during a load run and restarts
// it: no request fails, none waits on Redis for long, and Redis serves
// hits again soon after it is back.
func TestRedisOutage(t *testing.T) {
	rs := testkit.StartRedis(t)
	prefix := testPrefix(t)
	var logBuf testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	probe := testkit.StartSchedProbe()
	a := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs), Logger: log})
	b := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs), MaxLocalBytes: 64 << 10})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var errs, reqs atomic.Int64
	var maxLat atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			o := &origin{}
			for ctx.Err() == nil {
				c := a
				if rng.IntN(2) == 0 {
					c = b
				}
				k := fmt.Sprintf("k%d", rng.IntN(5000))
				t0 := time.Now()
				_, err := c.Get(context.Background(), req(c, "", k, o, 2*time.Second, 0))
				d := time.Since(t0)
				reqs.Add(1)
				if err != nil {
					errs.Add(1)
				}
				for {
					m := maxLat.Load()
					if int64(d) <= m || maxLat.CompareAndSwap(m, int64(d)) {
						break
					}
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if !b.Stats().RedisUp || b.Stats().RedisHits == 0 {
		t.Fatalf("no redis hits before the outage: %+v", b.Stats())
	}
	rs.Kill()
	waitFor(t, func() bool { return !a.Stats().RedisUp && !b.Stats().RedisUp })
	time.Sleep(500 * time.Millisecond)
	rs.Start()
	back := time.Now()
	hits := b.Stats().RedisHits
	waitFor(t, func() bool { return b.Stats().RedisHits > hits })
	recovery := time.Since(back)
	time.Sleep(200 * time.Millisecond)
	stop()
	wg.Wait()
	t.Logf("requests %d, errors %d, slowest %v, redis hits again %v after restart",
		reqs.Load(), errs.Load(), time.Duration(maxLat.Load()), recovery)
	if errs.Load() != 0 {
		t.Fatalf("%d requests failed during the outage", errs.Load())
	}
	if recovery > 5*time.Second {
		t.Fatalf("redis hits resumed %v after restart, want within 5s", recovery)
	}
	starved := probe.Stop()
	t.Logf("worst scheduling delay during the run: %v", starved)
	checkStateLines(t, logBuf.String(), starved)
}

// TestRedisDownAtStart: the cache works in-process only and recovers.
func TestRedisDownAtStart(t *testing.T) {
	rs := testkit.StartRedis(t)
	rs.Kill()
	c := newTestCache(t, Config{Redis: redisClient(t, rs)})
	o := &origin{}
	for range 3 {
		if _, err := c.Get(context.Background(), req(c, "", "k", o, time.Minute, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if c.Stats().RedisUp || o.calls.Load() != 1 {
		t.Fatalf("stats %+v calls %d", c.Stats(), o.calls.Load())
	}
	rs.Start()
	waitFor(t, func() bool { return c.Stats().RedisUp })
}

// TestHammer mixes reads, purges and Redis traffic from many goroutines
// (run under -race).
func TestHammer(t *testing.T) {
	rs := testkit.StartRedis(t)
	prefix := testPrefix(t)
	a := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs), MaxLocalBytes: 32 << 10})
	b := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs)})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for i := range 400 {
				c := a
				if i%2 == 0 {
					c = b
				}
				u := fmt.Sprint(rng.IntN(20))
				tag := "user:" + u
				switch rng.IntN(10) {
				case 0:
					c.Purge(context.Background(), tag)
				default:
					want := "user-" + u
					r := &Request{Key: c.Key(u, "rep"), TTL: time.Duration(1+rng.IntN(50)) * time.Millisecond,
						Stale: time.Duration(rng.IntN(20)) * time.Millisecond, Tags: []string{tag},
						Fill: func(context.Context) (*Entry, error) { return &Entry{Status: 200, Body: []byte(want)}, nil }}
					res, err := c.Get(context.Background(), r)
					if err != nil {
						t.Error(err)
						return
					}
					if string(res.Entry.Body) != want {
						t.Errorf("user %s got %q", u, res.Entry.Body)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// checkStateLines: one warning when Redis went and one info line when it
// came back. Under the race detector or on a machine busy enough to starve
// goroutines past the Redis timeout, a healthy Redis can time out and
// reopen the breaker; each such episode must still be one warning paired
// with one info line.
func checkStateLines(t *testing.T, out string, starved time.Duration) {
	t.Helper()
	down, up := strings.Count(out, "redis unavailable"), strings.Count(out, "redis available again")
	if down != 1 || up != 1 {
		// Goroutines starved past the Redis timeout time out on a healthy
		// Redis: only then may the breaker reopen.
		if !(raceEnabled || starved > 50*time.Millisecond) || down != up || down == 0 {
			t.Fatalf("%d 'unavailable' and %d 'available again' lines, want 1 and 1:\n%s", down, up, out)
		}
		t.Logf("breaker reopened under the race detector: %d episodes", down)
	}
}

// TestPurgeReplayedAfterOutage: a purge made while the breaker is open is
// applied locally at once and replayed to Redis (and to the other
// instances) when Redis is back.
func TestPurgeReplayedAfterOutage(t *testing.T) {
	rs := testkit.StartRedis(t)
	prefix := testPrefix(t)
	a := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs)})
	b := newTestCache(t, Config{Prefix: prefix, Redis: redisClient(t, rs)})
	time.Sleep(50 * time.Millisecond)
	o := &origin{}
	rb := req(b, "9", "rep", o, time.Hour, 0, "user:9")
	if _, err := b.Get(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
	raw := redisClient(t, rs)
	waitFor(t, func() bool { return raw.Exists(context.Background(), b.redisKey(rb.Key)).Val() == 1 })
	a.trip(errors.New("test outage"))
	a.Purge(context.Background(), "user:9")
	if raw.Exists(context.Background(), b.redisKey(rb.Key)).Val() != 1 {
		t.Fatal("purge reached Redis through an open breaker")
	}
	waitFor(t, func() bool { return a.Stats().RedisUp })
	waitFor(t, func() bool { return raw.Exists(context.Background(), b.redisKey(rb.Key)).Val() == 0 })
	waitFor(t, func() bool { return b.Stats().PurgesReceived > 0 })
	if res, _ := b.Get(context.Background(), rb); res.Event != EventMiss {
		t.Fatalf("B still serves the purged entry: %v from %v", res.Event, res.Tier)
	}
}

// TestUnpurgeableNotStored: an entry with a tag that no purge could carry
// is served but never stored.
func TestUnpurgeableNotStored(t *testing.T) {
	c := newTestCache(t, Config{})
	o := &origin{}
	for range 2 {
		if _, err := c.Get(context.Background(), req(c, "", "k", o, time.Minute, 0, "user:1\nchallenges")); err != nil {
			t.Fatal(err)
		}
	}
	if o.calls.Load() != 2 {
		t.Fatalf("origin calls = %d, want 2", o.calls.Load())
	}
}
