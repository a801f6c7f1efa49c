package app

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// testAdminToken is an admin token of the minimum length.
const testAdminToken = "app-test-admin-token-0123456789abcdef"

// rawGet sends one GET over a fresh TCP connection, as written, and
// returns the status and body.
func rawGet(t *testing.T, addr, target, token string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: wingate\r\nConnection: close\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", target, addr, err)
	}
	defer res.Body.Close()
	var b []byte
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b = make([]byte, 64) // a stream: its first bytes tell
		n, _ := io.ReadAtLeast(res.Body, b, 1)
		b = b[:n]
	} else {
		b, _ = io.ReadAll(res.Body)
	}
	return res.StatusCode, string(b)
}

// TestListeners: the operators' paths (/metrics, /dashboard and its event
// stream, /admin) are 404 not_found on the public listener in every
// spelling Fiber's routing would match, and served on the operators'
// listener; /readyz has details only there; the API and /healthz are on
// the public listener. Raw requests over TCP, against Start's listeners.
func TestListeners(t *testing.T) {
	cfg := Defaults()
	cfg.Addr, cfg.PolicyDir, cfg.JWTSecret, cfg.AdminToken = "127.0.0.1:0", policyDir(t), testSecret, testAdminToken
	logs := &testkit.LockedBuffer{}
	a := startReady(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	pub, ops := a.Addr(), a.OpsAddr()
	if ops == "" || ops == pub {
		t.Fatalf("operators' listener %q beside public %q", ops, pub)
	}
	if !strings.HasPrefix(ops, "127.0.0.1:") {
		t.Errorf("operators' listener %s is not on loopback", ops)
	}
	if l := logs.String(); !strings.Contains(l, "addr="+pub) || !strings.Contains(l, "ops_addr="+ops) {
		t.Errorf("the start-up log does not name both listeners:\n%s", l)
	}

	// Every spelling of an operators' path that reaches its route.
	opsPaths := []string{
		"/metrics", "/metrics/", "/METRICS", "/Metrics?x=1",
		"/dashboard", "/dashboard/", "/dashboard/state", "/dashboard/events", "/Dashboard/Events",
		"/dashboard/assets/dashboard.js",
		"/admin/status", "/admin/policies", "/ADMIN/status", "/admin/status/", "/%61dmin/status",
		"//admin/status", "/./admin/status", "/api/../admin/status", "/%2Fadmin/status",
	}
	for _, p := range opsPaths {
		st, body := rawGet(t, pub, p, testAdminToken)
		if st != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
			t.Errorf("public GET %s = %d %.120q, want 404 not_found", p, st, body)
		}
	}
	served := []string{"/metrics", "/dashboard", "/dashboard/state", "/dashboard/events", "/admin/status", "/admin/policies"}
	for _, p := range served {
		if st, body := rawGet(t, ops, p, testAdminToken); st != http.StatusOK {
			t.Errorf("operators' GET %s = %d %.200q, want 200", p, st, body)
		}
	}
	// The admin API keeps its own guard on the operators' listener.
	if st, _ := rawGet(t, ops, "/admin/status", ""); st != http.StatusUnauthorized {
		t.Errorf("operators' /admin/status without a token = %d, want 401", st)
	}
	for _, p := range []string{"/healthz", "/api/challenges"} {
		if st, body := rawGet(t, pub, p, ""); st != http.StatusOK {
			t.Errorf("public GET %s = %d %.200q", p, st, body)
		}
	}

	// /readyz: status only in public, details for operators.
	st, body := rawGet(t, pub, "/readyz", "")
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil || st != 200 || len(m) != 1 || m["status"] != "ok" {
		t.Errorf("public /readyz = %d %s, want 200 and only {\"status\":\"ok\"}", st, body)
	}
	st, body = rawGet(t, ops, "/readyz", "")
	var d struct {
		Status string
		Checks []struct {
			Name string
			OK   bool
		}
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || st != 200 || d.Status != "ok" || len(d.Checks) < 2 {
		t.Fatalf("operators' /readyz = %d %s, want its checks", st, body)
	}
	a.Drain()
	if _, body := rawGet(t, pub, "/readyz", ""); strings.Contains(body, "draining") || strings.Contains(body, "lifecycle") {
		t.Errorf("public /readyz while draining tells why: %s", body)
	}
	if st, body := rawGet(t, ops, "/readyz", ""); st != 503 || !strings.Contains(body, "draining") {
		t.Errorf("operators' /readyz while draining = %d %s, want 503 naming the draining check", st, body)
	}
}

// startReady builds cfg, starts both listeners, waits until ready and
// stops the application when the test ends.
func startReady(t *testing.T, cfg Config, log *slog.Logger) *App {
	t.Helper()
	a, err := Build(context.Background(), cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestOpsAddrOf: the operators' address is derived from --addr (port +
// 1 on loopback, 0 stays 0), named, or off; a bad one is a usage error.
func TestOpsAddrOf(t *testing.T) {
	for _, tc := range []struct {
		addr, ops, want string
		on, bad         bool
	}{
		{addr: "127.0.0.1:8080", want: "127.0.0.1:8081", on: true},
		{addr: "0.0.0.0:9000", want: "127.0.0.1:9001", on: true},
		{addr: ":8080", want: "127.0.0.1:8081", on: true},
		{addr: "127.0.0.1:0", want: "127.0.0.1:0", on: true},
		{addr: "127.0.0.1:8080", ops: "10.1.2.3:9999", want: "10.1.2.3:9999", on: true},
		{addr: "127.0.0.1:8080", ops: "off"},
		{addr: "127.0.0.1:65535", bad: true},
		{addr: "127.0.0.1:http", bad: true},
		{addr: "127.0.0.1:8080", ops: "nonsense", bad: true},
	} {
		c := Defaults()
		c.Addr, c.OpsAddr = tc.addr, tc.ops
		got, on, err := OpsAddrOf(c)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "usage") {
				t.Errorf("%q/%q: err %v, want a usage error", tc.addr, tc.ops, err)
			}
			continue
		}
		if err != nil || got != tc.want || on != tc.on {
			t.Errorf("%q/%q = %q %v %v, want %q %v", tc.addr, tc.ops, got, on, err, tc.want, tc.on)
		}
	}
}
