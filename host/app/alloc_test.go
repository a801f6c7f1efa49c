package app

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/sdk/abi"
)

// servedApp builds the application as `wingate serve` does with no
// configuration but the secret: the default policies from policies/
// under the rollout manager, the in-memory demo store, the in-process
// cache, metrics and alerts.
func servedApp(tb testing.TB) *App {
	tb.Helper()
	cfg := Defaults()
	cfg.PolicyDir, cfg.JWTSecret = policyDir(tb), testSecret
	return buildReady(tb, cfg, false)
}

// buildReady builds the assembly from cfg, starts it on a loopback port
// when listen is set, stops it when the test ends and waits until it is
// ready.
func buildReady(tb testing.TB, cfg Config, listen bool) *App {
	tb.Helper()
	a, err := Build(context.Background(), cfg, quiet())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Stop(context.Background()) })
	if listen {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		if err := a.Start(ln); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	return a
}

// hitRequest is a reusable request for path, as user (0: anonymous) with
// a valid token.
func hitRequest(tb testing.TB, path string, user int64) *fasthttp.RequestCtx {
	tb.Helper()
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("GET")
	rc.Request.SetRequestURI(path)
	if user != 0 {
		a, err := auth.New([]byte(testSecret))
		if err != nil {
			tb.Fatal(err)
		}
		tok, err := a.Issue(user, time.Hour)
		if err != nil {
			tb.Fatal(err)
		}
		rc.Request.Header.Set("Authorization", "Bearer "+tok)
	}
	return &rc
}

// serveHit serves rc once and returns its X-Cache header ("" when absent)
// after checking the status.
func serveHit(h fasthttp.RequestHandler, rc *fasthttp.RequestCtx) (int, []byte) {
	rc.Response.Reset()
	h(rc)
	return rc.Response.StatusCode(), rc.Response.Header.Peek("X-Cache")
}

var hit = []byte("HIT")

// TestCachedHitAllocsThroughAssembly is the standing zero-allocation test
// of the path users run: the server built by Build as `wingate serve`
// builds it, whose cache decider is the rollout manager's (with shadowing
// and quarantine), and the shipped cache policy. A cached hit on the
// public catalogue and on a user's reputation with a valid token
// allocates nothing (user ids below 256: Go boxes larger ids stored in the
// request's locals). Under the race detector allocations are not the
// program's own and are not counted.
func TestCachedHitAllocsThroughAssembly(t *testing.T) {
	a := servedApp(t)
	// The server asks Deps.Policies for cache decisions and takes the
	// allocation-free branch when it has CacheInto (server's
	// cacheDeciderInto).
	if _, ok := a.decider.(*rollout.Decider); !ok {
		t.Fatalf("the assembly's decider is %T, want *rollout.Decider", a.decider)
	}
	if _, ok := a.decider.(interface {
		CacheInto(context.Context, *abi.CacheRequest, *abi.CacheDecision, []byte) ([]byte, policy.Result)
	}); !ok {
		t.Fatalf("the assembly's decider %T has no CacheInto: the cache middleware would allocate", a.decider)
	}
	h := a.Handler()
	for _, tc := range []struct {
		path string
		user int64
	}{{"/api/challenges", 0}, {"/api/challenges?limit=5", 0}, {"/api/users/7/reputation", 7}} {
		rc := hitRequest(t, tc.path, tc.user)
		if st, x := serveHit(h, rc); st != 200 || string(x) != "MISS" {
			t.Fatalf("%s: first answer %d X-Cache %q, want 200 MISS: %s", tc.path, st, x, rc.Response.Body())
		}
		if st, x := serveHit(h, rc); st != 200 || !bytes.Equal(x, hit) {
			t.Fatalf("%s: second answer %d X-Cache %q, want 200 HIT", tc.path, st, x)
		}
		if raceEnabled {
			continue
		}
		// AllocsPerRun counts the whole process's allocations, the
		// assembly's background work included (a policy check compiling
		// a module on a loaded machine showed as 5 per hit), and on a
		// loaded machine a decision may overrun its deadline and fail
		// open (BYPASS). So a round counts only when every answer was a
		// hit, and the least of the rounds is the path's own: a hit that
		// allocates does so in every round.
		n, rounds := -1.0, 0
		for range 5 {
			missed := 0
			m := testing.AllocsPerRun(500, func() {
				if st, x := serveHit(h, rc); st != 200 || !bytes.Equal(x, hit) {
					missed++
				}
			})
			if missed > 0 {
				t.Logf("%s: %d answers not cached hits in a round (a decision past its deadline on a loaded machine?); round not counted", tc.path, missed)
				continue
			}
			if rounds++; n < 0 || m < n {
				n = m
			}
			if rounds == 3 {
				break
			}
		}
		if rounds == 0 {
			t.Fatalf("%s: no round of 500 requests was all cached hits", tc.path)
		}
		if n != 0 {
			t.Errorf("%s: %v allocations per cached hit through the assembly, want 0", tc.path, n)
		}
	}
}
