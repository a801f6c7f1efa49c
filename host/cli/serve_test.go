package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/app"
)

// TestServeHelp: `wingate serve -h` documents every flag setting of
// package app with its variable, and --config; it exits 0.
func TestServeHelp(t *testing.T) {
	code, _, stderr := runCmd(t, "serve", "-h")
	if code != 0 {
		t.Fatalf("serve -h: code %d", code)
	}
	for _, s := range app.Settings() {
		if s.Flag == "" {
			continue
		}
		if !strings.Contains(stderr, "-"+s.Flag+" ") || !strings.Contains(stderr, "("+s.Env+")") {
			t.Errorf("serve -h lacks -%s (%s):\n%s", s.Flag, s.Env, stderr)
		}
	}
	if !strings.Contains(stderr, "-config string") {
		t.Errorf("serve -h lacks -config:\n%s", stderr)
	}
}

// TestServeFlagsOverFileAndEnv: a flag beats the variable, which beats
// the file named by --config; a bad value is a usage error (exit 2)
// naming the flag.
func TestServeFlagsOverFileAndEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wingate.json")
	os.WriteFile(file, []byte(`{"addr": "127.0.0.1:7001", "log_level": "debug", "redis_url": "redis://file"}`), 0o600)
	env := map[string]string{"WINGATE_LOG_LEVEL": "warn", "REDIS_URL": "redis://env"}
	cfg, err := parseServeFlags([]string{"--config", file, "--redis-url", "redis://flag"}, Stdio{Err: &strings.Builder{}},
		func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7001" || cfg.LogLevel != "warn" || cfg.RedisURL != "redis://flag" {
		t.Fatalf("config %+v: want addr from the file, log level from the environment, Redis from the flag", cfg)
	}
	env["WINGATE_CONFIG"] = file
	if cfg, err = parseServeFlags(nil, Stdio{Err: &strings.Builder{}}, func(k string) string { return env[k] }); err != nil || cfg.Addr != "127.0.0.1:7001" {
		t.Fatalf("WINGATE_CONFIG: %+v %v", cfg, err)
	}
	code, _, stderr := runCmd(t, "serve", "--cache-local-bytes", "-5", "--policy-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "cache sizes") {
		t.Fatalf("negative cache size: code %d, %q", code, stderr)
	}
	code, _, stderr = runCmd(t, "serve", "--log-level", "loud", "--addr", "127.0.0.1:0", "--policy-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "log level") {
		t.Fatalf("bad log level: code %d, %q", code, stderr)
	}
	// An admin token under the minimum: refused at start, whether by flag
	// or variable, and the message does not echo the token.
	short := "short-admin-tok-31-bytes-long.."
	code, _, stderr = runCmd(t, "serve", "--admin-token", short, "--addr", "127.0.0.1:0", "--policy-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "at least 32") || strings.Contains(stderr, short) {
		t.Fatalf("31-byte admin token: code %d, %q", code, stderr)
	}
	code, _, stderr = runCmd(t, "serve", "--ops-addr", "nowhere", "--addr", "127.0.0.1:0", "--policy-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "--ops-addr") {
		t.Fatalf("bad operators' address: code %d, %q", code, stderr)
	}
	code, _, stderr = runCmd(t, "serve", "--token-max-lifetime", "0s", "--addr", "127.0.0.1:0", "--policy-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "token_max_lifetime") {
		t.Fatalf("zero token lifetime: code %d, %q", code, stderr)
	}
	t.Setenv("WINGATE_CACHE_MAX_ENTRY_BYTES", "huge")
	code, _, stderr = runCmd(t, "serve", "--policy-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "WINGATE_CACHE_MAX_ENTRY_BYTES") {
		t.Fatalf("bad variable: code %d, %q", code, stderr)
	}
}

// TestDefaultOpsAddr: the admin commands' default address is the
// operators' listener serve derives from the same environment.
func TestDefaultOpsAddr(t *testing.T) {
	for _, tc := range []struct{ addr, ops, want string }{
		{"", "", "127.0.0.1:8081"},
		{"0.0.0.0:9000", "", "127.0.0.1:9001"},
		{"127.0.0.1:9000", "127.0.0.1:7777", "127.0.0.1:7777"},
		{"127.0.0.1:9000", "off", "127.0.0.1:8081"},
	} {
		env := map[string]string{"WINGATE_ADDR": tc.addr, "WINGATE_OPS_ADDR": tc.ops}
		if got := defaultOpsAddr(func(k string) string { return env[k] }); got != tc.want {
			t.Errorf("WINGATE_ADDR=%q WINGATE_OPS_ADDR=%q: %q, want %q", tc.addr, tc.ops, got, tc.want)
		}
	}
}
