package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTieredStart builds the server as `wingate serve` does with the
// repository's policies and an empty compilation cache: ready with every
// kind served by its policy on the interpreted tier (the operators'
// /readyz and /metrics say so, and a cached route gets the policy's
// decision, not the fallback), then every policy compiled once the
// background compilation ends, and said so. With policy_start
// "compiled" the server is ready with its policies compiled.
func TestTieredStart(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cfg := Defaults()
	cfg.PolicyDir, cfg.JWTSecret = policyDir(t), testSecret
	if raceEnabled {
		// The race detector and a loaded machine (the whole suite runs
		// at once) can take the compiled code's _initialize past the
		// default 500 ms, right after the compilation's garbage.
		cfg.PolicyInitTimeout = 10 * time.Second
	}
	a := buildReady(t, cfg, true)
	ops := "http://" + a.OpsAddr()
	get := func(url string) string {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	detail := func() string {
		var r struct {
			Checks []struct{ Name, Detail string }
		}
		if err := json.Unmarshal([]byte(get(ops+"/readyz")), &r); err != nil {
			t.Fatal(err)
		}
		for _, c := range r.Checks {
			if c.Name == "policies" {
				return c.Detail
			}
		}
		return ""
	}
	// Under the race detector the interpreter may not start a module
	// within the start-up timeouts; such a start waits for the compiled
	// code instead, and the first half proves nothing.
	if !raceEnabled {
		if d := detail(); d != "cache interpreted (compiling), route interpreted (compiling), compress interpreted (compiling)" {
			t.Errorf("/readyz policies detail at ready: %q", d)
		}
		if m := get(ops + "/metrics"); strings.Count(m, `exec_tier="interpreted"`) != 3 {
			t.Errorf("/metrics at ready does not show the three policies interpreted:\n%s", grepLines(m, "wingate_policy_active"))
		}
		res, err := http.Get("http://" + a.Addr() + "/api/challenges")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if v := res.Header.Get("X-Policy-Version"); !strings.HasPrefix(v, "cache@") || res.Header.Get("X-Policy-Outcome") != "" {
			t.Errorf("a cached route at ready: X-Policy-Version %q, X-Policy-Outcome %q; want the cache policy's own decision", v, res.Header.Get("X-Policy-Outcome"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.AwaitPoliciesCompiled(ctx); err != nil {
		t.Fatal(err)
	}
	if d := detail(); d != "cache compiled, route compiled, compress compiled" {
		t.Errorf("/readyz policies detail once compiled: %q", d)
	}
	if m := get(ops + "/metrics"); strings.Count(m, `exec_tier="compiled"`) != 3 || strings.Contains(m, `exec_tier="interpreted"`) {
		t.Errorf("/metrics once compiled:\n%s", grepLines(m, "wingate_policy_active"))
	}

	// policy_start "compiled", again with an empty cache: compiled
	// before ready.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cfg.PolicyStart = "compiled"
	b := buildReady(t, cfg, false)
	if b.runtime.Compiling() {
		t.Error("compilations pending with policy_start compiled")
	}
	for _, p := range b.engine.ActivePolicies() {
		if p.ExecTier != "compiled" {
			t.Errorf("%s runs %s with policy_start compiled", p.Kind, p.ExecTier)
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
