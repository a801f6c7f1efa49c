package rollout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/cli"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/server"
	"github.com/wingman-app/wingate/sdk/abi"
)

const adminToken = "test-admin-token"

// adminServer serves mgr's admin API (and its decider) on a loopback
// listener and returns its address.
func adminServer(t *testing.T, mgr *rollout.Manager, deps server.Deps) string {
	t.Helper()
	deps.Rollout, deps.AdminToken, deps.Policies = mgr, adminToken, mgr.Decider()
	srv := server.New(server.DefaultConfig(), deps)
	ln := listen(t)
	go srv.ServeOps(ln) // the operators' listener: the API and /admin
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// runCLI runs `wingate args...` and returns its exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestActivationRejections pushes, through the CLI and the admin API, a
// good signed version and then one of each kind of bad version: each is
// rejected at its step, the reason shows in the API and in the CLI, and
// the good version keeps serving.
func TestActivationRejections(t *testing.T) {
	ctx := context.Background()
	pub, priv, _ := rollout.GenerateKey()
	_, otherPriv, _ := rollout.GenerateKey()
	rt := newRuntime(t)
	mgr := newManager(t, rt, rollout.Config{PublicKey: pub})
	addr := adminServer(t, mgr, server.Deps{})
	dir := t.TempDir()
	good := versionWasm(t, "A")
	cfgPath := writeFile(t, dir, "config.json", cacheConfig(1800))
	casesOK := writeFile(t, dir, "cases-ok/catalogue.json", catalogueCase(1800))
	casesBad := writeFile(t, dir, "cases-bad/catalogue.json", catalogueCase(60))
	admin := []string{"--addr", addr, "--ops-addr", addr, "--token", adminToken}

	goodPath := writeFile(t, dir, "good.wasm", good)
	writeFile(t, dir, "good.wasm.sig", []byte(rollout.Sign(priv, good)+"\n"))
	args := append([]string{"policy", "push"}, admin...)
	code, out, errOut := runCLI(append(args, "--kind", "cache", "--config", cfgPath, "--cases", filepath.Dir(casesOK), "--activate", goodPath)...)
	if code != 0 {
		t.Fatalf("push good: exit %d: %s%s", code, out, errOut)
	}
	goodVersion := policy.Digest(good)
	serving := func() {
		t.Helper()
		d, res := mgr.Decider().Cache(ctx, &abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges", User: "1"})
		if res.Version != goodVersion || res.Outcome != policy.OutcomeOK || d.TTLSeconds != 1800 {
			t.Fatalf("serving %s (%s, ttl %d), want the good version %s", res.Version, res.Outcome, d.TTLSeconds, goodVersion)
		}
	}
	serving()

	corrupt := good[:len(good)/2]
	selfTest := versionWasm(t, "A")
	abiMismatch := abiV2(good)
	unsigned := testkit.WasmVariant(good, "unsigned")
	badSig := testkit.WasmVariant(good, "bad-signature")
	tests := []struct {
		name   string
		wasm   []byte
		sig    string // "" : no signature file
		cases  string
		step   string
		reason string
	}{
		{"unsigned when a key is required", unsigned, "", "", rollout.StepSignature, "missing"},
		{"bad signature", badSig, rollout.Sign(otherPriv, badSig), "", rollout.StepSignature, "does not match"},
		{"corrupted wasm", corrupt, rollout.Sign(priv, corrupt), "", rollout.StepValidate, "not a WebAssembly module"},
		{"failing self-test", selfTest, rollout.Sign(priv, selfTest), filepath.Dir(casesBad), rollout.StepSelfTest, "ttl_s"},
		{"ABI mismatch", abiMismatch, rollout.Sign(priv, abiMismatch), "", rollout.StepValidate, "wingate_abi_v2"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "bad" + string(rune('a'+i)) + ".wasm"
			p := writeFile(t, dir, name, tt.wasm)
			pushArgs := append(append([]string{}, args...), "--kind", "cache", "--config", cfgPath, "--activate")
			if tt.sig != "" {
				pushArgs = append(pushArgs, "--sig", writeFile(t, dir, name+".sig", []byte(tt.sig)))
			}
			if tt.cases != "" {
				pushArgs = append(pushArgs, "--cases", tt.cases)
			}
			code, out, errOut := runCLI(append(pushArgs, p)...)
			if code != 1 || !strings.Contains(errOut, "rejected at "+tt.step) || !strings.Contains(errOut, tt.reason) {
				t.Fatalf("push: exit %d, stdout %q, stderr %q; want exit 1 and %q with %q", code, out, errOut, "rejected at "+tt.step, tt.reason)
			}
			t.Logf("CLI: %s", strings.TrimSpace(errOut))
			serving()

			// The API lists the version as rejected, with the reason.
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/admin/policies", nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var list struct {
				Versions []rollout.Record `json:"versions"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
				t.Fatal(err)
			}
			latest := list.Versions[0]
			if latest.Status != rollout.StatusRejected || !strings.Contains(latest.Reason, tt.step) || !strings.Contains(latest.Reason, tt.reason) {
				t.Fatalf("API: latest version %d is %s (%q), want rejected at %s with %q", latest.ID, latest.Status, latest.Reason, tt.step, tt.reason)
			}
			// And `policy ls` shows it.
			code, out, errOut = runCLI(append([]string{"policy", "ls"}, admin...)...)
			if code != 0 || !strings.Contains(out, "rejected") || !strings.Contains(out, tt.reason) {
				t.Fatalf("ls: exit %d: %s%s", code, out, errOut)
			}
		})
	}
	// Activating a rejected version again through the API answers 422 with
	// the reason, and still changes nothing.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/admin/policies/2/activate", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error struct{ Code, Step, Reason string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || body.Error.Code != "rejected" || body.Error.Step != rollout.StepSignature || body.Error.Reason == "" {
		t.Fatalf("activate rejected: %d %+v", resp.StatusCode, body.Error)
	}
	serving()
}
