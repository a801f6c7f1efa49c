package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeObservability assembles a serve process (in-memory store, no
// Redis) and checks that requests are measured and the observability
// endpoints answer.
func TestServeObservability(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(`{"rules": [{"name": "AnyTraffic", "expr": "route_requests[1m] > 0", "severity": "info"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WINGATE_ALERT_RULES": rules}
	cfg, err := Load("", func(k string) string { return env[k] }, map[string]string{"policy_dir": t.TempDir(), "jwt_secret": testSecret})
	if err != nil {
		t.Fatal(err)
	}
	h, err := Build(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop(context.Background())
	get := func(path string) (int, string) {
		t.Helper()
		res, err := h.Server().App().Test(httptest.NewRequest("GET", path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for range 3 {
		if code, _ := get("/healthz"); code != 200 {
			t.Fatalf("/healthz: %d", code)
		}
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/healthz"} 3`) {
		t.Errorf("/metrics: %d, no count of 3 for /healthz in:\n%.2000s", code, body)
	}
	if code, body := get("/dashboard"); code != 200 || !strings.Contains(body, "<title>Wingate") {
		t.Errorf("/dashboard: %d %.200s", code, body)
	}
	if code, body := get("/dashboard/state"); code != 200 || !strings.Contains(body, `"/healthz"`) {
		t.Errorf("/dashboard/state: %d %.300s", code, body)
	}
	code, body = get("/api/alerts")
	var l struct {
		Active []struct{ Rule string } `json:"active"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &l) != nil {
		t.Fatalf("/api/alerts: %d %s", code, body)
	}
}

func TestServeRejectsBadAlertRules(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(`{"rules": [{"name": "x", "expr": "nope > 1"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.AlertRules, cfg.PolicyDir, cfg.JWTSecret = rules, t.TempDir(), testSecret
	h, err := Build(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		h.Stop(context.Background())
		t.Fatal("Build accepted a broken rules file")
	}
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("error = %v, want a usage error naming the signal", err)
	}
}
