package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const (
	module = "github.com/wingman-app/wingate/"
	wazero = "github.com/tetratelabs/wazero"
	redis  = "github.com/redis/go-redis/v9"
	pgx    = "github.com/jackc/pgx/v5"
)

// deps returns the transitive dependencies of pkg (go list -deps), or,
// with direct, its imports only.
func deps(t *testing.T, pkg string, direct bool) map[string]bool {
	t.Helper()
	args := []string{"list", "-deps", module + pkg}
	if direct {
		args = []string{"list", "-f", `{{join .Imports "\n"}}`, module + pkg}
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	set := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		set[l] = true
	}
	if !direct && !set[module+pkg] {
		t.Fatalf("go list -deps %s did not list the package itself: %q", pkg, out)
	}
	return set
}

// forbidden reports every dependency of set that is one of the packages
// named, or, for a package outside this module, below it.
func forbidden(set map[string]bool, pkgs ...string) []string {
	var bad []string
	for d := range set {
		for _, p := range pkgs {
			if d == p || (!strings.HasPrefix(p, module) && strings.HasPrefix(d, p+"/")) {
				bad = append(bad, d)
			}
		}
	}
	return bad
}

// TestNoRuntimeBelow: the observability, alerting, dashboard and chat
// packages and the small type packages link neither the wasm runtime nor a
// store driver.
func TestNoRuntimeBelow(t *testing.T) {
	pkgs := []string{
		"host/observe", "host/observe/event", "host/alert", "host/dashboard", "host/chat",
		"host/decision", "host/rollout/record", "sdk/abi",
	}
	for _, p := range pkgs {
		if bad := forbidden(deps(t, p, false), wazero, redis, pgx); len(bad) > 0 {
			t.Errorf("%s links %v", p, bad)
		}
	}
}

// TestLayerImports: who may depend on whom inside the module.
func TestLayerImports(t *testing.T) {
	cases := []struct {
		pkg    string
		direct bool // only the package's own imports
		not    []string
	}{
		// observe is a sink: the observed packages register with it.
		{"host/observe", true, []string{"host/cache", "host/chat", "host/policy", "host/store", "host/rollout", "host/llm"}},
		// chat consumes decisions, not the runtime that makes them.
		{"host/chat", false, []string{"host/policy", "host/rollout", "host/cache"}},
		// a store backend of the rollout does not import the manager.
		{"host/store/pgpolicy", false, []string{"host/rollout", "host/policy"}},
		// the decision and event vocabularies import nothing of the host.
		{"host/decision", false, []string{"host/policy", "host/observe", "host/store"}},
		{"host/observe/event", false, []string{"host/policy", "host/observe", "host/store", "host/decision", "sdk/abi"}},
		// the error table is below every surface.
		{"host/apierr", false, []string{"host/server", "host/store", "host/policy", "host/llm"}},
	}
	for _, c := range cases {
		set := deps(t, c.pkg, c.direct)
		var prefixes []string
		for _, n := range c.not {
			prefixes = append(prefixes, module+n)
		}
		if bad := forbidden(set, prefixes...); len(bad) > 0 {
			t.Errorf("%s depends on %v", c.pkg, bad)
		}
	}
}

// TestForbiddenDetects: the check itself finds a runtime where there is one.
func TestForbiddenDetects(t *testing.T) {
	if bad := forbidden(deps(t, "host/policy", false), wazero); len(bad) == 0 {
		t.Fatal("host/policy should link wazero; the dependency check sees nothing")
	}
	if bad := forbidden(deps(t, "host/cache", false), redis); len(bad) == 0 {
		t.Fatal("host/cache should link go-redis; the dependency check sees nothing")
	}
}
