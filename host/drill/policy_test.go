package drill

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/policy/policybuild/buildtest"
)

// shippedPolicy is one entry of policies/policies.json with its module.
type shippedPolicy struct {
	Kind       string          `json:"kind"`
	Name       string          `json:"name"`
	File       string          `json:"file"`
	DeadlineMS float64         `json:"deadline_ms"`
	Config     json.RawMessage `json:"config"`
	wasm       []byte
}

func shipped(t *testing.T, kind string) shippedPolicy {
	t.Helper()
	dir := policyDir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "policies.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Policies []shippedPolicy `json:"policies"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("policies.json: %v", err)
	}
	for _, p := range f.Policies {
		if p.Kind == kind {
			if p.wasm, err = os.ReadFile(filepath.Join(dir, p.File)); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("policies.json has no %s policy", kind)
	return shippedPolicy{}
}

// push uploads a version through the admin API as multipart/form-data;
// fields are the upload's form fields (kind, name, config, cases,
// deadline_ms, activate).
func push(h *host, wasm []byte, fields map[string]string) (answer, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			return answer{}, err
		}
	}
	fw, err := mw.CreateFormFile("wasm", "policy.wasm")
	if err != nil {
		return answer{}, err
	}
	if _, err := fw.Write(wasm); err != nil {
		return answer{}, err
	}
	if err := mw.Close(); err != nil {
		return answer{}, err
	}
	req, err := http.NewRequest(http.MethodPost, h.ops+"/admin/policies", &body)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := adminClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&a.Body); err != nil {
		return a, fmt.Errorf("upload: status %d, body is not JSON: %w", resp.StatusCode, err)
	}
	if e, ok := a.Body["error"].(map[string]any); ok {
		a.Code, _ = e["code"].(string)
	}
	return a, nil
}

// pushVariants pushes one variant of the shipped cache policy per tag
// (the module made distinct by the tag, the shipped configuration)
// through h, without activating them, and returns their version ids.
func pushVariants(t *testing.T, h *host, tags ...string) []int64 {
	t.Helper()
	sp := shipped(t, "cache")
	ids := make([]int64, len(tags))
	for i, tag := range tags {
		a, err := push(h, testkit.WasmVariant(sp.wasm, tag), map[string]string{"kind": "cache", "name": sp.Name + "-" + tag,
			"config": string(sp.Config), "deadline_ms": strconv.FormatFloat(sp.DeadlineMS, 'f', -1, 64)})
		if err != nil || a.Status != http.StatusCreated {
			t.Fatalf("push %s = %d %v (%v)", tag, a.Status, a.Body, err)
		}
		ids[i] = versionID(a)
	}
	return ids
}

func admin(method, path string) (answer, error) {
	return doJSON(method, path, adminToken, "", nil)
}

func versionID(a answer) int64 {
	v, _ := a.Body["version"].(map[string]any)
	id, _ := v["id"].(float64)
	return int64(id)
}

// activeEntry returns kind's entry in base's /admin/status "active"
// list, nil if kind has none, and whether the status could be read.
func activeEntry(base, kind string) (map[string]any, bool) {
	a, err := admin(http.MethodGet, base+"/admin/status")
	if err != nil || a.Status != http.StatusOK {
		return nil, false
	}
	inst, _ := a.Body["instance"].(map[string]any)
	act, _ := inst["active"].([]any)
	for _, x := range act {
		if m, _ := x.(map[string]any); m["kind"] == kind {
			return m, true
		}
	}
	return nil, true
}

// mustActiveEntry is activeEntry for a test that cannot go on without it.
func mustActiveEntry(t *testing.T, base, kind string) map[string]any {
	t.Helper()
	m, ok := activeEntry(base, kind)
	if !ok {
		t.Fatalf("%s/admin/status cannot be read", base)
	}
	return m
}

// activeCache returns the id of the cache version this instance serves.
func activeCache(t *testing.T, h *host) (id int64, quarantined bool) {
	t.Helper()
	m := mustActiveEntry(t, h.ops, "cache")
	f, _ := m["id"].(float64)
	q, _ := m["quarantined"].(bool)
	return int64(f), q
}

// TestDrillPolicySwaps switches the cache policy between two versions (and
// the route policy between two) through the admin API every second under
// load. Every switch must succeed, the responses must be attributed to
// both cache versions over the run, and no request may fail.
func TestDrillPolicySwaps(t *testing.T) {
	s := drillShape()
	db := database(t)
	h := startServe(t, func(c *app.Config) { c.DatabaseURL = db })
	ids := map[string][2]int64{}
	for _, kind := range []string{"cache", "route"} {
		p := shipped(t, kind)
		var pair [2]int64
		for i, tag := range []string{"a", "b"} {
			a, err := push(h, testkit.WasmVariant(p.wasm, tag), map[string]string{"kind": kind, "name": p.Name + "-" + tag,
				"config": string(p.Config), "deadline_ms": strconv.FormatFloat(p.DeadlineMS, 'f', -1, 64)})
			if err != nil || a.Status != http.StatusCreated {
				t.Fatalf("push %s %s = %d %v (%v)", kind, tag, a.Status, a.Body, err)
			}
			pair[i] = versionID(a)
		}
		ids[kind] = pair
	}
	l := startLedger(t, h, s.Writers, true)
	ld := startLoad(h, s, nil)

	var (
		swaps, failed int
		slowest       time.Duration
		total         time.Duration
	)
	tick := time.NewTicker(time.Second)
	end := time.Now().Add(s.Duration - 500*time.Millisecond)
	for i := 0; time.Now().Before(end); i++ {
		for _, kind := range []string{"cache", "route"} {
			id := ids[kind][i%2]
			t0 := time.Now()
			a, err := admin(http.MethodPost, fmt.Sprintf("%s/admin/policies/%d/activate", h.ops, id))
			d := time.Since(t0)
			total += d
			slowest = max(slowest, d)
			if err != nil || a.Status != http.StatusOK {
				failed++
				t.Errorf("activate %s version %d = %d %v (%v)", kind, id, a.Status, a.Body, err)
				continue
			}
			swaps++
		}
		<-tick.C
	}
	tick.Stop()
	rep := ld.wait(t)
	l.finish()

	logLoad(t, rep)
	l.checkAnswers(t)
	t.Logf("policy swaps: %d activations (cache and route alternately between two versions each), %d failed, mean %v, slowest %v",
		swaps, failed, (total / time.Duration(max(1, swaps+failed))).Round(time.Millisecond), slowest.Round(time.Millisecond))
	l.mu.Lock()
	t.Logf("cache versions seen by the probe: %v; fail-open outcomes: %v", l.versions, l.outcomes)
	seen := len(l.versions)
	l.mu.Unlock()
	if swaps < 2 {
		t.Errorf("only %d activations succeeded", swaps)
	}
	if seen < 2 {
		t.Errorf("responses were attributed to %d cache versions; want both", seen)
	}
	if len(rep.Errors) != 0 {
		t.Errorf("errors during the swaps: %v; want none", rep.Errors)
	}
	l.verify(t, db)
}

// hostileGuest builds the policy runtime's test guest, whose behaviour is
// chosen by its configuration ({"mode": "loop"} spins forever, "trap"
// exits, ...).
func hostileGuest(t *testing.T) []byte {
	t.Helper()
	return buildtest.Wasm(t, filepath.Join(testkit.RepoRoot(t), "host", "policy", "testdata", "guest"))
}

// hostilePush is one hostile cache policy pushed by a drill: the test
// guest in mode, with the shipped cache policy's case file or none.
type hostilePush struct {
	name, mode string
	cases      bool
}

// TestDrillHostilePolicy pushes hostile cache policies under load: one that
// traps (exits) in every decision, with the shipped policy's case file (the
// self-test must reject it), then the same without cases and one that
// returns errors (each must either be rejected or, once serving, be rolled
// back automatically and quarantined). Meanwhile every request must be
// answered: the fail-open decision (bypass) is served, never a 5xx.
func TestDrillHostilePolicy(t *testing.T) {
	hostileDrill(t, []hostilePush{
		{"trap-with-cases", "trap", true},
		{"trap", "trap", false},
		{"error", "error", false},
	})
}

// TestDrillRunawayPolicy is the hostile drill with policies that loop
// forever. A runaway guest spins in compiled code; if the runtime cannot
// stop it, the whole process freezes (the Go runtime cannot stop the
// goroutine for a garbage collection, and every other goroutine waits), so
// the drill runs in a child process that is killed after a bound: a
// short version in the test suite, the full one with -drill.
func TestDrillRunawayPolicy(t *testing.T) {
	if os.Getenv("WINGATE_DRILL_CHILD") == "runaway" {
		hostileDrill(t, []hostilePush{
			{"loop-with-cases", "loop", true},
			{"loop", "loop", false},
		})
		return
	}
	bound := 3 * time.Minute
	args := []string{"-test.run", "^TestDrillRunawayPolicy$", "-test.v", "-test.count", "1"}
	if *full {
		args = append(args, "-drill")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "WINGATE_DRILL_CHILD=runaway")
	var out testkit.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("child drill:\n%s", filterLog(out.String()))
		if err != nil {
			t.Errorf("the runaway-policy drill failed: %v", err)
		}
	case <-time.After(bound):
		_ = cmd.Process.Kill()
		<-done
		t.Logf("child drill:\n%s", filterLog(out.String()))
		t.Errorf("the process serving a runaway policy froze: no progress for %v (killed)", bound)
	}
}

// filterLog drops the server's own log lines from a child's output.
func filterLog(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "time=") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func hostileDrill(t *testing.T, pushes []hostilePush) {
	s := drillShape()
	guest := hostileGuest(t)
	cases, err := os.ReadFile(filepath.Join(testkit.RepoRoot(t), "plugins", "cache", "testdata", "cases", "default.json"))
	if err != nil {
		t.Fatal(err)
	}
	db := database(t)
	h := startServe(t, func(c *app.Config) { c.DatabaseURL = db })
	good, _ := activeCache(t, h)
	if good == 0 {
		t.Fatal("no cache policy is active at start")
	}
	l := startLedger(t, h, s.Writers, false)
	ld := startLoad(h, s, nil)

	part := s.Duration / time.Duration(len(pushes)+1)
	time.Sleep(part / 2)
	for i, p := range pushes {
		fields := map[string]string{"kind": "cache", "name": "hostile-" + p.name, "deadline_ms": "5", "activate": "true",
			"config": fmt.Sprintf(`{"mode": %q, "tag": "%d"}`, p.mode, i)}
		if p.cases {
			fields["cases"] = string(cases)
		}
		t0 := time.Now()
		a, err := push(h, testkit.WasmVariant(guest, p.name), fields)
		if err != nil {
			t.Fatalf("push %s: %v", p.name, err)
		}
		switch a.Status {
		case http.StatusUnprocessableEntity:
			e, _ := a.Body["error"].(map[string]any)
			t.Logf("%s: rejected in %v at step %v: %v", p.name, time.Since(t0).Round(time.Millisecond), e["step"], e["reason"])
		case http.StatusCreated:
			id := versionID(a)
			if p.cases {
				t.Errorf("%s: a hostile policy passed its self-test and was activated", p.name)
			}
			// Serving: the automatic rollback must restore the good version.
			deadline := time.Now().Add(30 * time.Second)
			for {
				act, _ := activeCache(t, h)
				if act == good {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s (version %d) still active 30 s after activation; want it rolled back to %d", p.name, id, good)
				}
				time.Sleep(50 * time.Millisecond)
			}
			rec, _ := admin(http.MethodGet, fmt.Sprintf("%s/admin/policies/%d", h.ops, id))
			v, _ := rec.Body["version"].(map[string]any)
			t.Logf("%s: activated, rolled back %v later; version %d is %v (%v)", p.name,
				time.Since(t0).Round(time.Millisecond), id, v["status"], v["reason"])
			if v["status"] != "quarantined" && v["status"] != "rejected" {
				t.Errorf("%s: status after the rollback = %v; want quarantined", p.name, v["status"])
			}
		default:
			t.Fatalf("push %s = %d %v", p.name, a.Status, a.Body)
		}
		time.Sleep(part)
	}
	rep := ld.wait(t)
	l.finish()

	logLoad(t, rep)
	l.checkAnswers(t)
	l.mu.Lock()
	outcomes := map[string]int64{}
	for k, v := range l.outcomes {
		outcomes[k] = v
	}
	versions := make([]string, 0, len(l.versions))
	for v := range l.versions {
		versions = append(versions, v)
	}
	l.mu.Unlock()
	sort.Strings(versions)
	t.Logf("probe: cache versions %v, fail-open outcomes %v", versions, outcomes)
	if act, q := activeCache(t, h); act != good || q {
		t.Errorf("cache version at the end = %d (quarantined %v); want the good version %d serving", act, q, good)
	}
	if len(rep.Errors) != 0 {
		t.Errorf("errors while hostile policies were pushed: %v; want none (fail open)", rep.Errors)
	}
	l.verify(t, db)
}
