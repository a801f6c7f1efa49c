package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// runCmd runs a subcommand in process and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestTokenUsesTheSecretServeKeeps(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv("WINGATE_JWT_SECRET", "")
	t.Setenv("WINGATE_ADDR", "")
	code, _, stderr := runCmd(t, "token", "--user", "7", "--addr", "127.0.0.1:18081")
	if code != 1 || !strings.Contains(stderr, "WINGATE_JWT_SECRET") || !strings.Contains(stderr, "127.0.0.1:18081") {
		t.Fatalf("token before any serve: code %d, stderr %q", code, stderr)
	}
	// serve without a secret keeps one per address.
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfgA, cfgB := app.Defaults(), app.Defaults()
	cfgA.Addr, cfgB.Addr = "127.0.0.1:18081", "127.0.0.1:18082"
	for _, c := range []*app.Config{&cfgA, &cfgB} {
		if err := devDefaults(c, log); err != nil {
			t.Fatal(err)
		}
	}
	if cfgA.JWTSecret == "" || cfgA.JWTSecret == cfgB.JWTSecret || cfgA.AdminToken == "" || cfgA.AdminToken == cfgB.AdminToken {
		t.Fatal("two addresses share a development secret or admin token")
	}
	for _, c := range []app.Config{cfgA, cfgB} {
		for _, name := range []string{devSecretFile, devAdminFile} {
			path, _ := devFile(c.Addr, name)
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v, want mode 0600", path, fi, err)
			}
		}
		if strings.Contains(logs.String(), c.JWTSecret) || strings.Contains(logs.String(), c.AdminToken) {
			t.Fatalf("the log shows a secret:\n%s", logs.String())
		}
	}
	// A restart (or a second serve of the address) keeps the secret.
	again := app.Defaults()
	again.Addr = "localhost:18081"
	if err := devDefaults(&again, log); err != nil || again.JWTSecret != cfgA.JWTSecret || again.AdminToken != cfgA.AdminToken {
		t.Fatalf("serve again on the address: %v; the secret or admin token changed", err)
	}
	a, _ := auth.New([]byte(cfgA.JWTSecret))
	b, _ := auth.New([]byte(cfgB.JWTSecret))
	// Each spelling of A's address signs for A, and B refuses it as
	// signed with another key.
	for _, addr := range []string{"127.0.0.1:18081", ":18081", "localhost:18081", "http://127.0.0.1:18081"} {
		code, out, stderr := runCmd(t, "token", "--user", "7", "--addr", addr)
		if code != 0 {
			t.Fatalf("token --addr %s: code %d, stderr %s", addr, code, stderr)
		}
		if id, err := a.Verify(strings.TrimSpace(out)); err != nil || id != 7 {
			t.Fatalf("--addr %s: A verifies the token as %d, %v; want 7", addr, id, err)
		}
		if _, err := b.Verify(strings.TrimSpace(out)); !errors.Is(err, auth.ErrWrongKey) {
			t.Fatalf("--addr %s: B verifies A's token: %v, want ErrWrongKey", addr, err)
		}
	}
	// WINGATE_ADDR names the server when no flag does.
	t.Setenv("WINGATE_ADDR", cfgB.Addr)
	if _, out, _ := runCmd(t, "token", "--user", "8"); func() error { _, err := b.Verify(strings.TrimSpace(out)); return err }() != nil {
		t.Fatal("token with WINGATE_ADDR set: not B's")
	}
	// A non-loopback address gets a secret but no admin token.
	wide := app.Defaults()
	wide.Addr = "0.0.0.0:18083"
	if err := devDefaults(&wide, log); err != nil || wide.JWTSecret == "" || wide.AdminToken != "" {
		t.Fatalf("serve on 0.0.0.0: %v, admin token set %v", err, wide.AdminToken != "")
	}
	// An explicit secret wins, and the served secret rejects its tokens.
	code, out, _ := runCmd(t, "token", "--user", "7", "--jwt-secret", "another-secret-0123456789")
	if code != 0 {
		t.Fatal("token with --jwt-secret failed")
	}
	if _, err := a.Verify(strings.TrimSpace(out)); err == nil {
		t.Fatal("a token signed with another secret verified")
	}
	for _, args := range [][]string{{"token"}, {"token", "--user", "0"}, {"token", "--user", "1", "--ttl", "-1h"}} {
		if code, _, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%v: code %d, want 2 (usage)", args, code)
		}
	}
	cfg := app.Defaults()
	cfg.JWTSecret, cfg.PolicyDir = "short", t.TempDir()
	if h, err := app.Build(context.Background(), cfg, app.Options{Logger: testLogger(t)}); err == nil {
		h.Stop(context.Background())
		t.Error("a 5-byte secret was accepted")
	} else if !errors.Is(err, errUsage) {
		t.Errorf("a 5-byte secret: %v, want a usage error", err)
	}
}

// startHost builds the application through package app, as serve does,
// from its defaults changed by set, and serves it on a free port; it
// returns the base URL.
func startHost(t *testing.T, set func(*app.Config)) (*app.App, string) {
	t.Helper()
	cfg := app.Defaults()
	cfg.PolicyDir = t.TempDir()
	cfg.JWTSecret = "serve-test-secret-0123456789"
	if set != nil {
		set(&cfg)
	}
	h, err := app.Build(context.Background(), cfg, app.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("app.Build: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return h, "http://" + ln.Addr().String()
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// call sends a request and returns the status and the decoded JSON body;
// it fails the test when the body is not JSON.
func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := newRequest(method, url, token, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: status %d, body is not JSON: %q", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

func newRequest(method, url, token, body string) (*http.Request, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func waitReady(t *testing.T, base string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, m := call(t, "GET", base+"/readyz", "", "")
		if st == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after %v: %v", st, within, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServeWithoutDatabaseUsesDemoData(t *testing.T) {
	_, base := startHost(t, nil)
	waitReady(t, base, 5*time.Second)
	a, _ := auth.New([]byte("serve-test-secret-0123456789"))
	tok, _ := a.Issue(1, time.Hour)
	st, m := call(t, "GET", base+"/api/users/1/reputation", tok, "")
	if st != 200 || m["user_id"].(float64) != 1 {
		t.Fatalf("demo reputation = %d %v", st, m)
	}
	st, m = call(t, "GET", base+"/api/challenges?limit=3", "", "")
	if st != 200 || len(m["items"].([]any)) != 3 {
		t.Fatalf("challenges = %d %v", st, m)
	}
}

// deadPort returns a local port nothing listens on.
func deadPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

func TestServeStartsWhileDatabaseIsDown(t *testing.T) {
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/nothing?sslmode=disable&connect_timeout=1", deadPort(t))
	_, base := startHost(t, func(c *app.Config) {
		c.DatabaseURL, c.DBOpTimeout, c.DBAcquireTimeout = url, time.Second, 500*time.Millisecond
	})
	if st, _ := call(t, "GET", base+"/healthz", "", ""); st != 200 {
		t.Fatalf("/healthz = %d, want 200 while the database is down", st)
	}
	if st, m := call(t, "GET", base+"/readyz", "", ""); st != 503 {
		t.Fatalf("/readyz = %d %v, want 503", st, m)
	}
	t0 := time.Now()
	st, m := call(t, "GET", base+"/api/challenges", "", "")
	if st != 503 || m["error"].(map[string]any)["code"] != "unavailable" {
		t.Fatalf("challenges = %d %v, want 503 unavailable", st, m)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("503 took %v, more than the 1 s operation timeout allows", d)
	}
}

func TestMigrateSeedAndServeOnPostgres(t *testing.T) {
	url, drop, err := pgstore.CreateTestDatabase(context.Background(), "wingate_cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	code, out, stderr := runCmd(t, "migrate", "--database-url", url)
	if code != 0 || !strings.Contains(out, "applied migrations") {
		t.Fatalf("migrate: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCmd(t, "migrate", "--database-url", url)
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate: %d %q", code, out)
	}
	code, out, _ = runCmd(t, "migrate", "--database-url", url, "--status")
	if code != 0 || !strings.Contains(out, "0001 schema") || strings.Contains(out, "pending") {
		t.Fatalf("migrate --status: %d %q", code, out)
	}
	code, out, stderr = runCmd(t, "seed", "--database-url", url, "--users", "300")
	if code != 0 || !strings.Contains(out, "seeded 300 users") {
		t.Fatalf("seed: %d %q %q", code, out, stderr)
	}
	code, _, stderr = runCmd(t, "seed", "--database-url", url, "--users", "10")
	if code != 1 || !strings.Contains(stderr, "reset") {
		t.Fatalf("seed over existing users: %d %q", code, stderr)
	}
	if code, _, _ := runCmd(t, "seed", "--users", "10", "--database-url", ""); code != 2 {
		t.Fatalf("seed without a database: code %d, want 2", code)
	}

	_, base := startHost(t, func(c *app.Config) { c.DatabaseURL = url })
	waitReady(t, base, 15*time.Second)
	a, _ := auth.New([]byte("serve-test-secret-0123456789"))
	tok, _ := a.Issue(5, time.Hour)
	st, m := call(t, "GET", base+"/api/users/5/reputation", tok, "")
	if st != 200 || m["user_id"].(float64) != 5 {
		t.Fatalf("reputation of a seeded user = %d %v", st, m)
	}
}
