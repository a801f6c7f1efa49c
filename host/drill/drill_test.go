package drill

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// TestDrillRedisOutage stops the server's Redis a third of the way into a
// load run and restarts it at two thirds. Every request must be answered
// without error (the in-process tier and the database carry the reads),
// every acknowledged write must be in the database, and Redis must be
// filled again after its return.
func TestDrillRedisOutage(t *testing.T) {
	s := drillShape()
	db := database(t)
	rs := testkit.StartRedis(t)
	h := startServe(t, func(c *app.Config) { c.DatabaseURL, c.RedisURL = db, "redis://"+rs.Addr()+"/0" })
	l := startLedger(t, h, s.Writers, false)
	ld := startLoad(h, s, nil)

	third := s.Duration / 3
	sleepPhase(t, "redis up", third)
	before := redisKeys(rs)
	rs.Kill()
	sleepPhase(t, "redis stopped", third)
	rs.Start()
	back := time.Now()
	var refilled time.Duration
	for refilled == 0 && time.Since(back) < third+20*time.Second {
		if redisKeys(rs) > 0 {
			refilled = time.Since(back)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep := ld.wait(t)
	l.finish()

	logLoad(t, rep)
	l.checkAnswers(t)
	t.Logf("redis: %d keys before the stop; refilled %v after the restart (%d keys at the end)", before, refilled.Round(time.Millisecond), redisKeys(rs))
	if before == 0 {
		t.Error("Redis held no key before the stop: the second tier was not in use")
	}
	if refilled == 0 {
		t.Error("Redis was not written to again after its restart")
	}
	if len(rep.Errors) != 0 {
		t.Errorf("errors during the Redis outage: %v; want none (the cache degrades to the in-process tier)", rep.Errors)
	}
	if rep.Requests == 0 {
		t.Fatal("no load was sent")
	}
	l.verify(t, db)
}

// TestDrillPostgresFaults kills the pool's backends twice under load
// (pg_terminate_backend), then cuts the database (a proxy refusing every
// connection, as a stopped server), then restores it. Killed backends must
// cost no 5xx beyond a 503 on the requests they were serving; while the
// database is down, answers are 200 (cached reads) or 503 JSON; afterwards
// the service recovers by itself, with every acknowledged write kept.
func TestDrillPostgresFaults(t *testing.T) {
	s := drillShape()
	ctx := context.Background()
	db := database(t)
	du, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	px := testkit.StartFaultProxy(t, du.Host)
	pu := *du
	pu.Host = px.Addr()
	q := pu.Query()
	q.Set("connect_timeout", "1")
	pu.RawQuery = q.Encode()

	h := startServe(t, func(c *app.Config) {
		c.DatabaseURL, c.DBOpTimeout, c.DBAcquireTimeout = pu.String(), time.Second, 500*time.Millisecond
	})
	l := startLedger(t, h, s.Writers, false)
	ld := startLoad(h, s, nil)

	part := s.Duration / 6
	sleepPhase(t, "healthy", part)
	killed := 0
	for i := range 2 {
		// A killed backend fails the statement it was running: that
		// request may get a 503, never another 5xx.
		l.allow503.Store(true)
		n, err := pgstore.TerminateBackends(ctx, db)
		if err != nil {
			t.Fatalf("pg_terminate_backend: %v", err)
		}
		killed += n
		sleepPhase(t, "after pg_terminate_backend #"+string(rune('1'+i)), part/2)
		l.allow503.Store(false)
		sleepPhase(t, "steady", part/2)
	}
	l.allow503.Store(true)
	px.SetMode(testkit.ProxyRefuse)
	down := time.Now()
	sleepPhase(t, "database stopped", part)
	px.SetMode(testkit.ProxyForward)
	up := time.Now()
	h.waitReady(t, 30*time.Second)
	ready := time.Since(up)
	time.Sleep(time.Second) // requests that started during the outage end
	l.allow503.Store(false)
	rep := ld.wait(t)
	l.finish()

	logLoad(t, rep)
	l.checkAnswers(t)
	t.Logf("pg_terminate_backend ended %d backends; database down %v; ready %v after its return",
		killed, up.Sub(down).Round(time.Millisecond), ready.Round(time.Millisecond))
	if killed == 0 {
		t.Error("pg_terminate_backend ended no backend: the pool was not in use")
	}
	if n := count5xx(rep.Errors, 503); n != 0 {
		t.Errorf("load: %d 5xx other than 503 (%v)", n, rep.Errors)
	}
	if n := rep.Errors["transport"] + rep.Errors["timeout"]; n != 0 {
		t.Errorf("load: %d requests without an answer (%v)", n, rep.Errors)
	}
	t.Logf("503 answers while no fallback existed: load %d, ledger %d", rep.Errors["503"],
		l.count("location_put", 503)+l.count("complete", 503)+l.count("reputation", 503)+l.count("challenges", 503))
	if l.count("location_put", 503) == 0 {
		t.Error("no location PUT got a 503 while the database was down: the outage was not exercised")
	}
	l.verify(t, db)
}
