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
