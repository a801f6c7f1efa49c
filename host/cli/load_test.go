package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/loadgen"
)

func TestLoad(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	a, err := auth.New([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/users/") {
			uid, err := a.Verify(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			if err != nil || !strings.HasPrefix(r.URL.Path, "/api/users/"+strconv.FormatInt(uid, 10)+"/") {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		w.Header().Set("X-Cache", "HIT")
		w.Write([]byte("{}"))
	}))
	defer srv.Close()

	code, out, errOut := run(t, "", "load", "--url", srv.URL, "--requests", "60", "--connections", "3",
		"--mix", "challenges=1,reputation=1", "--jwt-secret", secret, "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, out)
	}
	if rep.Requests != 60 || len(rep.Errors) != 0 || rep.HitRatio != 1 {
		t.Errorf("report: %d requests, errors %v, hit ratio %v", rep.Requests, rep.Errors, rep.HitRatio)
	}

	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.json")
	if err := os.WriteFile(targets, []byte(`{"min_rps": 1e9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "report.json")
	code, out, errOut = run(t, "", "load", "--url", srv.URL, "--requests", "20", "--mix", "challenges=1", "--targets", targets, "--json", jsonFile)
	if code != 1 || !strings.Contains(out, "FAIL requests per second") || !strings.Contains(errOut, "targets missed") {
		t.Errorf("missed target: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if b, err := os.ReadFile(jsonFile); err != nil || !strings.Contains(string(b), `"pass": false`) {
		t.Errorf("JSON report file: %v\n%s", err, b)
	}

	code, _, errOut = run(t, "", "load", "--url", "http://10.0.0.1:8080", "--requests", "1", "--mix", "challenges=1")
	if code != 1 || !strings.Contains(errOut, "not a loopback address") {
		t.Errorf("non-loopback target: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, "", "load", "--mix", "weather=1")
	if code != 2 || !strings.Contains(errOut, "weather") {
		t.Errorf("bad mix: exit %d, stderr %q", code, errOut)
	}
}

// TestLoadOneURL drives one endpoint of the real application (built by
// package app as serve builds it) at a constant rate, with a valid token
// for the user it reads.
func TestLoadOneURL(t *testing.T) {
	_, base := startHost(t, nil)
	code, out, errOut := run(t, "", "load", "--url", base+"/api/users/7/reputation", "--user", "7",
		"--jwt-secret", "serve-test-secret-0123456789", "--mode", "rate", "--rate", "400", "--duration", "1s",
		"--connections", "4", "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep loadgen.URLReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, out)
	}
	if rep.Requests < 200 || rep.Requests > 401 || rep.Non2xx != 0 || rep.Errors != 0 || rep.P99 <= 0 {
		t.Fatalf("report %+v: want about 400 answered 2xx", rep)
	}
	// Without the token the same endpoint answers 401: counted, not hidden.
	code, out, _ = run(t, "", "load", "--url", base+"/api/users/7/reputation", "--duration", "200ms", "--connections", "2")
	if code != 0 || !strings.Contains(out, "non-2xx") || strings.Contains(out, "non-2xx 0,") {
		t.Fatalf("unauthenticated run: exit %d\n%s", code, out)
	}
	code, _, errOut = run(t, "", "load", "--url", base+"/api/challenges", "--mode", "rate")
	if code != 2 || !strings.Contains(errOut, "--rate") {
		t.Fatalf("rate without --rate: exit %d %q", code, errOut)
	}
}
