package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

const testSecret = "app-test-secret-0123456789abcdef"

func quiet() Options {
	return Options{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }}
}

// policyDir returns the repository's built policies (policies/, from `go
// generate ./policies`), which `wingate serve` loads by default.
func policyDir(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(testkit.RepoRoot(tb), "policies")
	for _, f := range []string{"bundle.wasm", "cache.wasm", "route.wasm", "compress.wasm", "policies.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			tb.Fatalf("policies/%s is missing: run `go generate ./policies` first (%v)", f, err)
		}
	}
	return dir
}

// TestLoadLayers: each layer overrides the one before — defaults, file,
// environment, flags — and every key of the file, variable and flag
// reaches its field.
func TestLoadLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wingate.json")
	os.WriteFile(file, []byte(`{"addr": "127.0.0.1:9000", "redis_url": "redis://file", "log_level": "debug",
		"cache_local_bytes": 1048576, "db_op_timeout": "3s", "llm_sim_latency": "5ms"}`), 0o600)
	env := map[string]string{"REDIS_URL": "redis://env", "WINGATE_LOG_LEVEL": "warn", "WINGATE_DB_OP_TIMEOUT": "4s",
		"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "WINGATE_CACHE_MAX_ENTRY_BYTES": "1000"}
	getenv := func(k string) string { return env[k] }
	c, err := Load(file, getenv, map[string]string{"log_level": "error", "cache_max_entry_bytes": "2000"})
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Addr = "127.0.0.1:9000"                 // file
	want.RedisURL = "redis://env"                // env over file
	want.LogLevel = "error"                      // flag over env over file
	want.CacheLocalBytes = 1 << 20               // file
	want.CacheMaxEntryBytes = 2000               // flag over env
	want.DBOpTimeout = 4 * time.Second           // env over file
	want.SimLatency = 5 * time.Millisecond       // file
	want.OpenAIBaseURL = "http://127.0.0.1:1/v1" // env only
	if c != want {
		t.Fatalf("Load:\n got %+v\nwant %+v", c, want)
	}
	if d, err := Load("", nil, nil); err != nil || d != Defaults() {
		t.Fatalf("Load of nothing = %+v, %v; want the defaults", d, err)
	}
}

// TestLoadRejects: a bad value names its setting, flag and variable; the
// file is checked for unknown keys and shape. Never a silent default.
func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	cases := []struct {
		name, file string
		env, flags map[string]string
		want       string
	}{
		{"env not a number", "", map[string]string{"WINGATE_CACHE_LOCAL_BYTES": "lots"}, nil, "WINGATE_CACHE_LOCAL_BYTES"},
		{"flag not a number", "", nil, map[string]string{"cache_local_bytes": "1e99x"}, "--cache-local-bytes"},
		{"negative size", "", map[string]string{"WINGATE_CACHE_LOCAL_BYTES": "-1"}, nil, "cache sizes"},
		{"bad duration", "", map[string]string{"WINGATE_DB_OP_TIMEOUT": "soon"}, nil, "WINGATE_DB_OP_TIMEOUT"},
		{"negative latency", "", map[string]string{"WINGATE_LLM_SIM_LATENCY": "-1s"}, nil, "latencies"},
		{"unknown file key", write("u.json", `{"adress": "x"}`), nil, nil, `unknown keys ["adress"]`},
		{"nested file value", write("n.json", `{"addr": {"host": "x"}}`), nil, nil, "not an object"},
		{"file not JSON", write("j.json", `addr = 1`), nil, nil, "not a JSON object"},
		{"file missing", filepath.Join(dir, "none.json"), nil, nil, "no such file"},
		{"file wrong type", write("t.json", `{"cache_local_bytes": "big"}`), nil, nil, "cache_local_bytes"},
		{"unknown flag key", "", nil, map[string]string{"nope": "1"}, "unknown setting"},
		{"bad log level", "", map[string]string{"WINGATE_LOG_LEVEL": "loud"}, nil, "log level"},
		{"bad user mode", "", map[string]string{"WINGATE_LLM_USER": "raw"}, nil, "WINGATE_LLM_USER"},
		{"no idle provider connections", "", map[string]string{"WINGATE_LLM_MAX_IDLE_CONNS": "0"}, nil, "WINGATE_LLM_MAX_IDLE_CONNS"},
		{"bad pass-through", "", map[string]string{"WINGATE_LLM_PASS_THROUGH": "yes"}, nil, "WINGATE_LLM_PASS_THROUGH"},
		{"policy start-up timeout over its ceiling", "", map[string]string{"WINGATE_POLICY_INIT_TIMEOUT": "61s"}, nil, "policy start-up timeout"},
		{"negative policy start-up timeout", "", map[string]string{"WINGATE_POLICY_INIT_TIMEOUT": "-1s"}, nil, "policy start-up timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.file, func(k string) string { return tc.env[k] }, tc.flags)
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSettingsCoverConfig: every Config field has exactly one setting
// with a variable, and the flags and variables are unique.
func TestSettingsCoverConfig(t *testing.T) {
	m, err := toMap(Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != len(Settings()) {
		t.Fatalf("%d Config fields, %d settings", len(m), len(Settings()))
	}
	seen := map[string]bool{}
	for _, s := range Settings() {
		for _, name := range []string{"key:" + s.Key, "env:" + s.Env, "flag:" + s.Flag} {
			if name != "flag:" && seen[name] {
				t.Errorf("%s twice", name)
			}
			seen[name] = true
		}
		if s.Env == "" || s.Usage == "" {
			t.Errorf("setting %s lacks a variable or help", s.Key)
		}
	}
}

// TestLifecycle: Start serves, Ready passes, Drain fails /readyz with 503
// while requests are still answered, Stop closes the listener and every
// service, and a second Stop does nothing.
func TestLifecycle(t *testing.T) {
	cfg := Defaults()
	cfg.PolicyDir, cfg.JWTSecret = t.TempDir(), testSecret
	a, err := Build(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ln); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ln); err == nil {
		t.Fatal("a second Start was accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr()
	get := func(path string) (int, map[string]any) {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		var m map[string]any
		b, _ := io.ReadAll(res.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("GET %s: %d %q is not JSON", path, res.StatusCode, b)
		}
		return res.StatusCode, m
	}
	if st, m := get("/readyz"); st != 200 {
		t.Fatalf("/readyz = %d %v before draining", st, m)
	}
	a.Drain()
	// /readyz says only ready or not; the reason is for operators (Ready).
	if st, m := get("/readyz"); st != 503 || m["status"] != "unavailable" {
		t.Fatalf("/readyz = %d %v while draining, want 503 unavailable", st, m)
	}
	if err := a.Ready(ctx); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("Ready = %v while draining, want an error naming the drain", err)
	}
	if st, _ := get("/api/challenges?limit=1"); st != 200 {
		t.Fatalf("/api/challenges = %d while draining, want 200 (still served)", st)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", a.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Stop")
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestRunStopsOnCancel: Run (what `wingate serve` calls) serves until its
// context ends and returns nil; a port in use is an error before anything
// is built.
func TestRunStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	cfg := Defaults()
	cfg.Addr, cfg.PolicyDir, cfg.JWTSecret = addr, t.TempDir(), testSecret
	if err := Run(context.Background(), cfg, quiet()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run on a port in use: %v", err)
	}
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, quiet()) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run never served: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
