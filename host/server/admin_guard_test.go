package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// adminGet sends GET /admin/status with token over a raw connection from
// the source address src to addr and returns the status and the
// Retry-After header.
func adminGet(t *testing.T, src, addr, token string) (int, string) {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /admin/status HTTP/1.1\r\nHost: w\r\nConnection: close\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Retry-After")
}

// TestAdminFailureLimit: a client guessing the admin token gets
// AdminFailBurst answers 401, then 429 with Retry-After for every request,
// the right token included (no oracle while blocked), until its bucket
// refills one attempt per AdminFailEvery; another address is not
// affected; no guessed token reaches the log. Raw connections from
// 127.0.0.1 and 127.0.0.2 to the operators' listener.
func TestAdminFailureLimit(t *testing.T) {
	const token = "admin-guard-test-token-0123456789abcdef"
	srv := newAdminServer(t, token, 1024)
	logs := &testkit.LockedBuffer{}
	srv.log = slog.New(slog.NewTextHandler(logs, nil))
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	srv.admin.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeOps(ln)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	guess := func(i int) string { return "guess-" + strings.Repeat("x", i) + "-attacker-secret" }
	for i := range AdminFailBurst {
		if st, _ := adminGet(t, "127.0.0.1", addr, guess(i)); st != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, st)
		}
	}
	for i, tok := range []string{guess(99), token} {
		st, ra := adminGet(t, "127.0.0.1", addr, tok)
		if st != http.StatusTooManyRequests || ra != "6" {
			t.Fatalf("attempt %d past the limit: %d Retry-After %q, want 429 and 6", i, st, ra)
		}
	}
	// Another address keeps its own attempts.
	if st, _ := adminGet(t, "127.0.0.2", addr, token); st != http.StatusOK {
		t.Fatalf("127.0.0.2 with the right token: %d, want 200", st)
	}
	if st, _ := adminGet(t, "127.0.0.2", addr, guess(1)); st != http.StatusUnauthorized {
		t.Fatalf("127.0.0.2's first wrong guess: %d, want 401", st)
	}
	// Half a refill: still blocked, with the rest of the wait.
	advance(AdminFailEvery / 2)
	if st, ra := adminGet(t, "127.0.0.1", addr, token); st != http.StatusTooManyRequests || ra != "3" {
		t.Fatalf("half a refill later: %d Retry-After %q, want 429 and 3", st, ra)
	}
	// One refill: one attempt, then blocked again.
	advance(AdminFailEvery / 2)
	if st, _ := adminGet(t, "127.0.0.1", addr, guess(100)); st != http.StatusUnauthorized {
		t.Fatalf("after a refill, a guess: %d, want 401", st)
	}
	if st, _ := adminGet(t, "127.0.0.1", addr, token); st != http.StatusTooManyRequests {
		t.Fatalf("after the refilled attempt was used: %d, want 429", st)
	}
	// A full refill: the right token works again.
	advance(AdminFailBurst * AdminFailEvery)
	if st, _ := adminGet(t, "127.0.0.1", addr, token); st != http.StatusOK {
		t.Fatalf("after a full refill, the right token: %d, want 200", st)
	}

	out := logs.String()
	if n := strings.Count(out, "admin: refused"); n != AdminFailBurst+2 {
		t.Errorf("%d refusals logged, want %d:\n%s", n, AdminFailBurst+2, out)
	}
	if !strings.Contains(out, "client=127.0.0.1") || !strings.Contains(out, "client=127.0.0.2") {
		t.Errorf("the refusals do not name the client:\n%s", out)
	}
	for _, secret := range []string{"attacker-secret", "guess-", token} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds a presented token (%q):\n%s", secret, out)
		}
	}
}

// TestAdminGuardBounded: a flood of addresses cannot grow the buckets
// past adminFailClients; past it, new addresses share one bucket, so a
// spread-out guesser is still limited.
func TestAdminGuardBounded(t *testing.T) {
	g := adminGuard{now: time.Now, buckets: map[string]*failBucket{}}
	for i := range adminFailClients + 500 {
		g.fail(net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String())
	}
	if n := len(g.buckets); n > adminFailClients {
		t.Fatalf("%d buckets, bound %d", n, adminFailClients)
	}
	for range AdminFailBurst {
		g.fail("192.0.2.1")
	}
	if g.blocked("192.0.2.1") == 0 {
		t.Fatal("an address past the bound is not limited")
	}
}
