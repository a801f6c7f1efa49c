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
		if !strings.Contains(stderr, "-"+s.Flag+" ") || !strings.Contains(stderr, s.Env) {
			t.Errorf("serve -h lacks -%s (%s):\n%s", s.Flag, s.Env, stderr)
		}
	}
	if !strings.Contains(stderr, "-config string") {
		t.Errorf("serve -h lacks -config:\n%s", stderr)
	}
}

// TestHelpNeverShowsSecrets: with every secret-bearing variable set,
// the help of every command and policy subcommand shows none of their
// values (serve says whether each is set), and exits 0.
func TestHelpNeverShowsSecrets(t *testing.T) {
	secrets := map[string]string{
		"WINGATE_ADMIN_TOKEN":   "admin-token-value-7f3a9c",
		"WINGATE_JWT_SECRET":    "jwt-secret-value-0b1d2e3f4a",
		"DATABASE_URL":          "postgres://wingate:db-password-5e6f@127.0.0.1:5432/test",
		"REDIS_URL":             "redis://:redis-password-9a8b@127.0.0.1:6379/0",
		"WINGATE_ALERT_WEBHOOK": "https://hooks.example/webhook-token-c4d5",
		"ANTHROPIC_API_KEY":     "anthropic-key-value-11aa",
		"OPENAI_API_KEY":        "openai-key-value-22bb",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	// A URL's password or token is a secret on its own.
	parts := []string{"db-password-5e6f", "redis-password-9a8b", "webhook-token-c4d5"}
	for _, v := range secrets {
		parts = append(parts, v)
	}
	shown := func(what, out string) {
		for _, p := range parts {
			if strings.Contains(out, p) {
				t.Errorf("%s shows %q:\n%s", what, p, out)
			}
		}
	}
	var helps [][]string
	for name := range commands {
		helps = append(helps, []string{name, "-h"})
	}
	for name := range policyCommands {
		helps = append(helps, []string{"policy", name, "-h"})
	}
	helps = append(helps, []string{"policy", "shadow", "start", "-h"})
	for _, args := range helps {
		code, out, errOut := runCmd(t, args...)
		if code != 0 && code != 2 {
			t.Errorf("%v: code %d", args, code)
		}
		shown(strings.Join(args, " "), out+errOut)
	}
	_, _, serveHelp := runCmd(t, "serve", "-h")
	if !strings.Contains(serveHelp, "WINGATE_ADMIN_TOKEN: set, hidden") || !strings.Contains(serveHelp, "WINGATE_JWT_SECRET: set, hidden") {
		t.Errorf("serve -h does not say the secrets are set:\n%s", serveHelp)
	}
	_, _, pushHelp := runCmd(t, "policy", "push", "-h")
	if !strings.Contains(pushHelp, "WINGATE_ADMIN_TOKEN: set, hidden") {
		t.Errorf("policy push -h does not say the admin token is set:\n%s", pushHelp)
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

// TestDefaultOpsAddr: the admin commands reach the operators' listener
// serve derives from the same settings: --addr's port + 1 on loopback, or
// the operators' address when named.
func TestDefaultOpsAddr(t *testing.T) {
	for _, tc := range []struct{ addr, ops, want string }{
		{"127.0.0.1:8080", "", "http://127.0.0.1:8081"},
		{"0.0.0.0:9000", "", "http://127.0.0.1:9001"},
		{":9000", "", "http://127.0.0.1:9001"},
		{"http://127.0.0.1:9000/", "", "http://127.0.0.1:9001"},
		{"127.0.0.1:9000", "127.0.0.1:7777", "http://127.0.0.1:7777"},
		{"127.0.0.1:9000", "http://10.0.0.1:7777", "http://10.0.0.1:7777"},
		{"127.0.0.1:9000", "off", "http://127.0.0.1:9001"},
	} {
		if got := adminBaseURL(tc.addr, tc.ops); got != tc.want {
			t.Errorf("--addr %q --ops-addr %q: %q, want %q", tc.addr, tc.ops, got, tc.want)
		}
	}
}
