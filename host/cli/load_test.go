package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	// Without the token the same endpoint answers 401: counted, not
	// hidden, and the run fails (exit 1) unless told to accept it.
	code, out, errOut = run(t, "", "load", "--url", base+"/api/users/7/reputation", "--duration", "200ms", "--connections", "2")
	if code != 1 || !strings.Contains(out, "non-2xx") || strings.Contains(out, "non-2xx 0,") || !strings.Contains(errOut, "100.00% of requests failed") {
		t.Fatalf("unauthenticated run: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = run(t, "", "load", "--url", base+"/api/users/7/reputation", "--duration", "200ms", "--connections", "2", "--max-error-rate", "1")
	if code != 0 {
		t.Fatalf("unauthenticated run with --max-error-rate 1: exit %d %s", code, errOut)
	}
	code, _, errOut = run(t, "", "load", "--url", base+"/api/challenges", "--mode", "rate")
	if code != 2 || !strings.Contains(errOut, "--rate") {
		t.Fatalf("rate without --rate: exit %d %q", code, errOut)
	}
}

// TestLoadFailsWhenRequestsFail: a run whose requests all fail exits 1
// (it used to exit 0), in the text and the JSON report alike; a share of
// failures under --max-error-rate passes; a dead server fails.
func TestLoadFailsWhenRequestsFail(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail := r.URL.Query().Get("fail"); fail == "all" || (fail == "some" && n.Add(1)%20 == 0) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	code, out, errOut := run(t, "", "load", "--url", srv.URL, "--requests", "40", "--connections", "2", "--mix", "challenges=1")
	if code != 0 {
		t.Fatalf("healthy run: exit %d\n%s%s", code, out, errOut)
	}
	// A server that answers every request 500.
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer failing.Close()
	code, out, errOut = run(t, "", "load", "--url", failing.URL, "--requests", "40", "--connections", "2", "--mix", "challenges=1", "--json", "-")
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, out)
	}
	if code != 1 || !strings.Contains(errOut, "targets missed") || rep.Pass == nil || *rep.Pass || rep.Errors["500"] != 40 {
		t.Fatalf("every request failing: exit %d, pass %v, errors %v\n%s", code, rep.Pass, rep.Errors, errOut)
	}
	code, out, _ = run(t, "", "load", "--url", failing.URL, "--requests", "40", "--connections", "2", "--mix", "challenges=1")
	if code != 1 || !strings.Contains(out, "FAIL error ratio") {
		t.Fatalf("text report of a failing run: exit %d\n%s", code, out)
	}
	// 1 in 20 fails: over a 1% limit, under a 10% one.
	for _, c := range []struct {
		limit string
		code  int
	}{{"0.01", 1}, {"0.1", 0}} {
		code, out, _ := run(t, "", "load", "--url", srv.URL+"/api/challenges?fail=some", "--duration", "300ms", "--connections", "2", "--max-error-rate", c.limit)
		if code != c.code {
			t.Errorf("5%% failing, --max-error-rate %s: exit %d, want %d\n%s", c.limit, code, c.code, out)
		}
	}
	// Nobody listening: every request fails.
	dead := srv.Listener.Addr().String()
	srv.Close()
	if code, _, _ := run(t, "", "load", "--url", "http://"+dead, "--requests", "5", "--connections", "1", "--mix", "challenges=1"); code != 1 {
		t.Errorf("dead server: exit %d, want 1", code)
	}
	for _, bad := range []string{"-0.1", "1.5"} {
		if code, _, _ := run(t, "", "load", "--max-error-rate", bad); code != 2 {
			t.Errorf("--max-error-rate %s: exit %d, want 2", bad, code)
		}
	}
}

// TestLoadProgress: --progress rewrites one line (carriage return, no
// newline) with the rate, errors and p50/p99 while the run lasts, then
// clears it before the final table.
func TestLoadProgress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	code, out, errOut := run(t, "", "load", "--url", srv.URL, "--duration", "2500ms", "--connections", "2", "--mix", "challenges=1", "--progress")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	live, table, ok := strings.Cut(out, "\r\033[Ktarget ")
	if !ok {
		t.Fatalf("no cleared line before the table:\n%q", out)
	}
	lines := strings.Split(strings.TrimPrefix(live, "\r\033[K"), "\r\033[K")
	if len(lines) < 2 || len(lines) > 4 || strings.Contains(live, "\n") {
		t.Fatalf("want 2-4 progress readings on one line (one a second and a last), got %d: %q", len(lines), live)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "measured ") || !strings.Contains(l, "req/s") || !strings.Contains(l, "errors 0 (0.00%)") ||
			!strings.Contains(l, "p50 ") || !strings.Contains(l, "p99 ") {
			t.Errorf("progress line %q", l)
		}
	}
	if !strings.Contains(table, "p99 ms") {
		t.Errorf("no final table:\n%s", table)
	}
	// Not a terminal, no flag: no progress line.
	_, out, _ = run(t, "", "load", "--url", srv.URL, "--requests", "10", "--connections", "1", "--mix", "challenges=1")
	if strings.Contains(out, "\r") {
		t.Errorf("progress written to a non-terminal:\n%q", out)
	}
}
