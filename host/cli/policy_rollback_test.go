package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/app"
)

// TestPolicyRollbackCLI: through the admin API, `policy rollback` goes
// back to the last good version and a second one does not toggle back
// (409 no_rollback_target, exit 1); --to brings a named version back; ls
// shows the replaced version inactive, "rolled back". The address and
// token come from the flags as an operator gives them.
func TestPolicyRollbackCLI(t *testing.T) {
	const token = "admin-token-for-the-rollback-test"
	h, base := startHost(t, func(c *app.Config) { c.AdminToken = token })
	wasm := filepath.Join(repoRoot, "policies", "cache.wasm")
	admin := []string{"--addr", base, "--ops-addr", h.OpsAddr(), "--token", token}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		all := append([]string{args[0], args[1]}, admin...) // flags before the file
		return runCmd(t, append(all, args[2:]...)...)
	}
	for _, ttl := range []string{"60", "61"} {
		cfg := writeTemp(t, "cache-"+ttl+".json", `{"rules": [{"route": "/api/challenges", "ttl_s": `+ttl+`, "scope": "global"}]}`)
		if code, out, errOut := cli("policy", "push", "--kind", "cache", "--name", "cache-"+ttl, "--config", cfg, "--activate", wasm); code != 0 ||
			!strings.Contains(out, "activated version") {
			t.Fatalf("push cache-%s: %d %s %s", ttl, code, out, errOut)
		}
	}
	code, out, errOut := cli("policy", "rollback", "--kind", "cache")
	if code != 0 || !strings.Contains(out, "rolled back to version 1: cache cache-60@") {
		t.Fatalf("rollback: %d %s %s", code, out, errOut)
	}
	code, _, errOut = cli("policy", "rollback", "--kind", "cache")
	if code != 1 || !strings.Contains(errOut, "no_rollback_target") {
		t.Fatalf("second rollback: %d %s, want no_rollback_target", code, errOut)
	}
	_, out, _ = cli("policy", "ls")
	if !outputHas(out, "2 cache cache-61 … inactive … rolled back") || !outputHas(out, "1 cache cache-60 … active") {
		t.Fatalf("ls after the rollbacks:\n%s", out)
	}
	code, out, errOut = cli("policy", "rollback", "--kind", "cache", "--to", "2")
	if code != 0 || !strings.Contains(out, "rolled back to version 2: cache cache-61@") {
		t.Fatalf("rollback --to 2: %d %s %s", code, out, errOut)
	}
	if code, _, _ := cli("policy", "rollback", "--kind", "cache", "--to", "-1"); code != 2 {
		t.Fatalf("rollback --to -1: exit %d, want 2", code)
	}
}
