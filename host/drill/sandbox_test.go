package drill

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/guests"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/policy"
)

// The sandbox drill (issue: sandbox containment). Every hostile module of
// the catalogue in host/internal/guests is pushed through the admin API and,
// separately, dropped into the watched policy directory of a `wingate serve`
// built and run as its own process, exactly as `go build ./cmd/wingate`
// builds it. For each module and each way in:
//
//   - it is refused (push answers 4xx; the directory keeps the previous
//     version), or activated and then quarantined and rolled back within 1 s
//     of its first failing call;
//   - sequential requests each answer within 2 × deadline + 1 ms (p100),
//     with the fail-open decision while the module is active;
//   - with 16 concurrent clients, the host's own longest policy call stays
//     within 2 × deadline + 1 ms and /healthz answers with p99 under 10 ms;
//   - the server's RSS grows by less than 50 MB and its log by less than
//     64 KiB.
//
// The smoke version (the CI suite) sends 200 sequential and 16 × 20
// concurrent requests per module; -drill sends 1,000 and 16 × 100.

// sandboxShape is the size of one module's run.
type sandboxShape struct {
	Sequential int // requests one after another
	Clients    int // concurrent clients
	PerClient  int // requests per concurrent client
}

func sandboxSize() sandboxShape {
	if *full {
		return sandboxShape{Sequential: 1000, Clients: 16, PerClient: 100}
	}
	return sandboxShape{Sequential: 200, Clients: 16, PerClient: 20}
}

// sandboxLimits are the bounds a run is held to. The full drill (-drill,
// run on its own on a quiet machine) holds the promised figures; the
// smoke version runs beside the rest of the test suite on two shared
// cores, so it checks containment with room for the scheduler: a module
// that escaped (seconds past its deadline, a frozen process, a flooded
// log) still fails it.
type sandboxLimits struct {
	Call, Health, Settle time.Duration
	RSS                  int64
}

func sandboxBounds() sandboxLimits {
	if *full {
		return sandboxLimits{Call: requestBound, Health: 10 * time.Millisecond, Settle: time.Second, RSS: rssBound}
	}
	return sandboxLimits{Call: 500 * time.Millisecond, Health: 500 * time.Millisecond, Settle: 5 * time.Second, RSS: 3 * rssBound}
}

const (
	// sandboxDeadline is the deadline the drill pushes every hostile module
	// with, and the one the policy directory gives it.
	sandboxDeadline = 10 * time.Millisecond
	// requestBound is the bound on every request and every policy call.
	requestBound = 2*sandboxDeadline + time.Millisecond
	// rssBound and logBound are the growth allowed per module.
	rssBound = 50 << 20
	logBound = 64 << 10
)

// drillBin drills a given binary (a release's, or another commit's for a
// comparison) instead of building one from this checkout.
var drillBin = flag.String("drill-bin", "", "drill this wingate binary instead of building ./cmd/wingate")

var (
	binaryOnce sync.Once
	binaryDir  string // removed by TestMain
	binaryPath string
	binaryErr  error
)

// TestMain removes the binary the drills built.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binaryDir != "" {
		_ = os.RemoveAll(binaryDir)
	}
	os.Exit(code)
}

// wingateBinary builds cmd/wingate as the README builds it and returns its
// path; built once per test process.
func wingateBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		if *drillBin != "" {
			binaryPath = *drillBin
			return
		}
		dir, err := os.MkdirTemp("", "wingate-drill-bin")
		if err != nil {
			binaryErr = err
			return
		}
		binaryDir = dir
		binaryPath = filepath.Join(dir, "wingate")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binaryPath, "./cmd/wingate")
		cmd.Dir = testkit.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("go build ./cmd/wingate: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// proc is a `wingate serve` running as its own process.
type proc struct {
	base    string // the public listener
	ops     string // the operators' listener
	cmd     *exec.Cmd
	logPath string
	done    chan error
}

// startProc copies the shipped policies into a directory of the test's
// own, starts the binary on it and waits for /readyz.
func startProc(t *testing.T, policyDir string, args ...string) *proc {
	t.Helper()
	bin := wingateBinary(t)
	addr, opsAddr := freeAddr(t), freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{"serve", "--addr", addr, "--ops-addr", opsAddr, "--jwt-secret", jwtSecret, "--admin-token", adminToken,
		"--policy-dir", policyDir, "--log-level", "info"}, args...)
	cmd := exec.Command(bin, all...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{base: "http://" + addr, ops: "http://" + opsAddr, cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("serve did not stop within 30 s of SIGINT")
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case err := <-p.done:
			t.Fatalf("serve exited before it was ready (%v): %s", err, p.tail(4096))
		default:
		}
		if st, _, _, err := do(http.MethodGet, p.base+"/readyz", "", "", nil); err == nil && st == http.StatusOK {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 3 minutes: %s", p.tail(4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rss returns the process's resident set size in bytes.
func (p *proc) rss(t *testing.T) int64 {
	t.Helper()
	v := rssOf(p.cmd.Process.Pid)
	if v == 0 {
		t.Fatal("no VmRSS in /proc status")
	}
	return v
}

func (p *proc) logSize(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func (p *proc) tail(n int64) string {
	raw, _ := os.ReadFile(p.logPath)
	if int64(len(raw)) > n {
		raw = raw[int64(len(raw))-n:]
	}
	return string(raw)
}

// copyPolicies copies the shipped policies into a fresh directory.
func copyPolicies(t *testing.T) string {
	t.Helper()
	src := policyDir(t)
	dst := t.TempDir()
	for _, f := range []string{"bundle.wasm", "cache.wasm", "route.wasm", "compress.wasm", "policies.json"} {
		raw, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// setPolicyFile points kind's entry of dir/policies.json at file with the
// drill's deadline, writing the file atomically (rename) as an operator's
// deploy would.
func setPolicyFile(t *testing.T, dir, kind, file string, deadline time.Duration) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "policies.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	pols, _ := f["policies"].([]any)
	for _, x := range pols {
		m, _ := x.(map[string]any)
		if m["kind"] == kind {
			m["file"] = file
			m["name"] = strings.TrimSuffix(file, ".wasm")
			if deadline > 0 {
				m["deadline_ms"] = float64(deadline) / float64(time.Millisecond)
			}
		}
	}
	out, _ := json.MarshalIndent(f, "", "  ")
	tmp := filepath.Join(dir, ".policies.json.tmp")
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "policies.json")); err != nil {
		t.Fatal(err)
	}
}

// activeVersion returns the name of kind's active policy on p and
// whether it is quarantined.
func activeVersion(t *testing.T, p *proc, kind string) (name string, quarantined bool) {
	t.Helper()
	m := mustActiveEntry(t, p.ops, kind)
	name, _ = m["policy"].(string)
	quarantined, _ = m["quarantined"].(bool)
	return name, quarantined
}

// durations summarises request latencies.
type durations []time.Duration

func (d durations) quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append(durations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q * float64(len(s)-1))
	return s[i]
}

// timedRequest sends one request and returns its latency; any answer that
// is not 200 is an error.
func timedRequest(client *http.Client, method, url, tok, body string) (time.Duration, error) {
	var rd *bytes.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequest(method, url, rd)
	} else {
		req, err = http.NewRequest(method, url, nil)
	}
	if err != nil {
		return 0, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	var buf [4096]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("%s %s: status %d", method, url, resp.StatusCode)
	}
	return d, nil
}

// sandboxRun is what one module did through one way in.
type sandboxRun struct {
	Module, Way, Phase string
	Outcome            string        // refused, rolled back, stayed active
	Settled            time.Duration // from activation to refusal or rollback
	P100               time.Duration // sequential phase: slowest request
	CallMax            time.Duration // longest policy call the host recorded
	HealthP99          time.Duration // concurrent phase: /healthz p99
	// ... of the probes sent while the module was active (how many), and after
	HealthActiveP99, HealthAfterP99 time.Duration
	HealthActiveN                   int
	Errors                          int
	RSSGrowth, LogGrowth            int64
}

// TestDrillSandbox runs the hostile-module catalogue against a served
// process; see the top of this file.
func TestDrillSandbox(t *testing.T) {
	mods := guests.Hostile()
	dir := copyPolicies(t)
	p := startProc(t, dir)
	size := sandboxSize()
	goodName, _ := activeVersion(t, p, "cache")
	if goodName == "" {
		t.Fatal("no cache policy active at start")
	}
	// Warm the process: its RSS is measured against this.
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; i < 200; i++ {
		if _, err := timedRequest(client, http.MethodGet, p.base+"/api/challenges", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	var runs []sandboxRun
	for _, m := range mods {
		for _, way := range []string{"push", "dir"} {
			for _, phase := range []string{"sequential", "concurrent"} {
				if m.Want == guests.RefusedAtLoad && phase == "concurrent" {
					continue // refused modules never serve
				}
				name := m.Name + "/" + way + "/" + phase
				t.Run(name, func(t *testing.T) {
					r := runSandbox(t, p, dir, client, m, way, phase, size, goodName)
					runs = append(runs, r)
				})
			}
		}
	}
	t.Log("module / way / phase: outcome, settled, sequential p100, policy call max, /healthz p99 (while the module was active: probes, p99; after it), RSS and log growth")
	for _, r := range runs {
		t.Logf("%-22s %-4s %-10s %-13s settled %7.1f ms  p100 %6.2f ms  call max %6.2f ms  healthz p99 %5.2f ms (active %3d %5.2f ms, after %5.2f ms)  rss %+6.1f MB  log %+6.1f KiB  errors %d",
			r.Module, r.Way, r.Phase, r.Outcome, ms(r.Settled), ms(r.P100), ms(r.CallMax), ms(r.HealthP99),
			r.HealthActiveN, ms(r.HealthActiveP99), ms(r.HealthAfterP99),
			float64(r.RSSGrowth)/(1<<20), float64(r.LogGrowth)/1024, r.Errors)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func runSandbox(t *testing.T, p *proc, dir string, client *http.Client, m guests.Module, way, phase string,
	size sandboxShape, goodName string) sandboxRun {
	r := sandboxRun{Module: m.Name, Way: way, Phase: phase}
	lim := sandboxBounds()
	rss0, log0 := p.rss(t), p.logSize(t)
	name := m.Name + "-" + way + "-" + phase
	wasm := testkit.WasmVariant(m.Wasm, name)

	// Bring the module in.
	t0 := time.Now()
	active := false
	switch way {
	case "push":
		a, err := push(&host{base: p.base, ops: p.ops}, wasm, map[string]string{"kind": m.Kind.String(), "name": name,
			"deadline_ms": strconv.Itoa(int(sandboxDeadline / time.Millisecond)), "activate": "true"})
		if err != nil && len(wasm) > policy.MaxModuleBytes {
			// Over the upload limit: the server answers 413 from the
			// Content-Length and closes the connection without reading
			// the body, which a client still writing sees as a reset.
			r.Outcome = "refused"
			break
		}
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		switch {
		case a.Status >= 400 && a.Status < 500:
			if a.Code == "" {
				t.Errorf("push refused with %d but no error code: %v", a.Status, a.Body)
			}
			r.Outcome = "refused"
		case a.Status >= 200 && a.Status < 300:
			active = true
		default:
			t.Fatalf("push answered %d: %v", a.Status, a.Body)
		}
	case "dir":
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
		setPolicyFile(t, dir, m.Kind.String(), name+".wasm", sandboxDeadline)
		st := waitDirVersion(t, p, name, log0)
		switch st {
		case "rejected":
			r.Outcome = "refused"
		case "active", "quarantined", "previous":
			active = true
		default:
			t.Fatalf("directory version %s ended as %q", name, st)
		}
	}
	if m.Want == guests.RefusedAtLoad && active {
		t.Errorf("%s (%s) was activated; want it refused at load (%s)", m.Name, m.Class, m.Item)
	}
	if r.Outcome == "refused" {
		r.Settled = time.Since(t0)
		if n, _ := activeVersion(t, p, m.Kind.String()); n == name {
			t.Errorf("a refused version is active")
		}
	}
	if active {
		t1 := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var settledNS, callMaxNS atomic.Int64 // written by the watcher
		wg.Add(1)
		go func() { // watch the active version: its longest call, and when it goes
			defer wg.Done()
			for {
				n, maxUS, gone := activeCallMax(p, m.Kind.String(), name)
				if n && int64(maxUS) > callMaxNS.Load() {
					callMaxNS.Store(int64(maxUS))
				}
				if gone && settledNS.Load() == 0 {
					settledNS.Store(int64(time.Since(t1)))
				}
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		var emu sync.Mutex // guards r.Errors
		switch phase {
		case "sequential":
			var lat durations
			for i := 0; i < size.Sequential; i++ {
				d, err := timedRequest(client, http.MethodGet, p.base+"/api/challenges", "", "")
				if err != nil {
					emu.Lock()
					r.Errors++
					emu.Unlock()
				}
				lat = append(lat, d)
			}
			r.P100 = lat.quantile(1)
		case "concurrent":
			var hl, hActive, hAfter durations
			hstop := make(chan struct{})
			var hwg sync.WaitGroup
			hwg.Add(1)
			go func() { // /healthz on its own connection every 10 ms
				defer hwg.Done()
				hc := &http.Client{Timeout: 20 * time.Second}
				for {
					at := time.Since(t1)
					d, err := timedRequest(hc, http.MethodGet, p.base+"/healthz", "", "")
					emu.Lock()
					if err != nil {
						r.Errors++
					}
					hl = append(hl, d)
					// Split by whether the module was still active when
					// the probe went out, to tell its effect from the
					// clients' own load on the shared cores.
					if s := settledNS.Load(); s == 0 || int64(at) < s {
						hActive = append(hActive, d)
					} else {
						hAfter = append(hAfter, d)
					}
					emu.Unlock()
					select {
					case <-hstop:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}()
			var cwg sync.WaitGroup
			for c := 0; c < size.Clients; c++ {
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					for i := 0; i < size.PerClient; i++ {
						if _, err := timedRequest(client, http.MethodGet, p.base+"/api/challenges", "", ""); err != nil {
							emu.Lock()
							r.Errors++
							emu.Unlock()
						}
					}
				}()
			}
			cwg.Wait()
			close(hstop)
			hwg.Wait()
			r.HealthP99 = hl.quantile(0.99)
			r.HealthActiveP99, r.HealthAfterP99 = hActive.quantile(0.99), hAfter.quantile(0.99)
			r.HealthActiveN = len(hActive)
			if r.HealthP99 > lim.Health {
				t.Errorf("/healthz p99 %v under 16 clients (want < %v)", r.HealthP99, lim.Health)
			}
		}
		// Let the quarantine settle if it has not, then stop watching.
		for deadline := time.Now().Add(5 * time.Second); settledNS.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		settled := time.Duration(settledNS.Load())
		r.CallMax, r.Settled = time.Duration(callMaxNS.Load()), settled
		switch m.Want {
		case guests.FailsAtCall:
			if settled == 0 {
				t.Errorf("%s stayed active; want it quarantined and rolled back", m.Name)
				r.Outcome = "stayed active"
			} else {
				r.Outcome = "rolled back"
				if settled > lim.Settle {
					t.Errorf("quarantined and rolled back %v after activation (want ≤ %v)", settled, lim.Settle)
				}
			}
		case guests.AnswersAtCall:
			r.Outcome = "stayed active"
		}
		if r.P100 > lim.Call {
			t.Errorf("slowest sequential request %v (want ≤ %v)", r.P100, lim.Call)
		}
		if r.CallMax > lim.Call {
			t.Errorf("longest policy call %v (want ≤ %v)", r.CallMax, lim.Call)
		}
		if r.Errors > 0 {
			t.Errorf("%d requests failed while %s was active", r.Errors, m.Name)
		}
	}
	if m.Want == guests.FailsAtCall {
		checkFailureMetrics(t, p, m, name)
	}
	restoreGood(t, p, dir, m.Kind.String(), way, name, goodName)
	r.RSSGrowth, r.LogGrowth = p.rss(t)-rss0, p.logSize(t)-log0
	if r.RSSGrowth > lim.RSS {
		t.Errorf("RSS grew by %.1f MB (want < %d MB)", float64(r.RSSGrowth)/(1<<20), lim.RSS>>20)
	}
	if r.LogGrowth > logBound {
		t.Errorf("log grew by %.1f KiB (want < 64 KiB)", float64(r.LogGrowth)/1024)
	}
	return r
}

// scrape returns the process's /metrics from its operators' listener.
func (p *proc) scrape() (string, error) {
	resp, err := http.Get(p.ops + "/metrics")
	if err != nil {
		return "", fmt.Errorf("/metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(body), nil
}

// checkFailureMetrics scrapes /metrics for the failing version's calls:
// its failed calls are counted under an outcome other than ok, and a
// module that grew its memory shows it in the memory gauge.
func checkFailureMetrics(t *testing.T, p *proc, m guests.Module, name string) {
	t.Helper()
	body, err := p.scrape()
	if err != nil {
		t.Error(err)
		return
	}
	failed, memory := 0.0, 0.0
	for _, line := range strings.Split(body, "\n") {
		if !strings.Contains(line, `policy_name="`+name+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.HasPrefix(line, "wingate_policy_call_duration_seconds_count{") && !strings.Contains(line, `outcome="ok"`):
			failed += v
		case strings.HasPrefix(line, "wingate_policy_memory_bytes{"):
			memory = max(memory, v)
		}
	}
	if failed == 0 {
		t.Errorf("/metrics counts no failed call of %s", name)
	}
	if m.Item == guests.Memory && memory < 16<<20 {
		t.Errorf("/metrics shows %s's memory as %.0f bytes; want its grown memory (> 16 MiB)", name, memory)
	}
}

// activeCallMax reports whether kind's active version is name, with its
// longest call so far, and whether name is gone (another version active,
// or name quarantined).
func activeCallMax(p *proc, kind, name string) (isActive bool, callMax time.Duration, gone bool) {
	m, ok := activeEntry(p.ops, kind)
	if !ok {
		return false, 0, false
	}
	if m == nil || m["policy"] != name {
		return false, 0, true
	}
	q, _ := m["quarantined"].(bool)
	res, _ := m["resources"].(map[string]any)
	us, _ := res["call_max_us"].(float64)
	return true, time.Duration(us * float64(time.Microsecond)), q
}

// waitDirVersion waits until the directory's version name has been
// checked and returns its status.
//
// A file the directory's limits refuse before it becomes a version (over
// the size cap, not a regular file) leaves no record: the server logs it
// once, naming the entry, and that line counts as the refusal.
func waitDirVersion(t *testing.T, p *proc, name string, logFrom int64) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		a, err := admin(http.MethodGet, p.ops+"/admin/policies")
		if err == nil && a.Status == http.StatusOK {
			vs, _ := a.Body["versions"].([]any)
			for _, x := range vs {
				m, _ := x.(map[string]any)
				if m["name"] == name {
					if st, _ := m["status"].(string); st != "" && st != "inactive" {
						return st
					}
				}
			}
		}
		if raw, err := os.ReadFile(p.logPath); err == nil && int64(len(raw)) > logFrom {
			for _, line := range strings.Split(string(raw[logFrom:]), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "directory") && strings.Contains(line, name) {
					return "rejected"
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the policy directory's %s was not checked within 2 minutes: %s", name, p.tail(2048))
	return ""
}

// restoreGood makes the shipped version active again.
func restoreGood(t *testing.T, p *proc, dir, kind, way, name, goodName string) {
	t.Helper()
	if way == "dir" {
		setPolicyFile(t, dir, kind, goodName+".wasm", 0)
		_ = os.Remove(filepath.Join(dir, name+".wasm"))
	}
	// A quarantined version is rolled back by the server itself; only one
	// that answers (and so stays active) is rolled back here, once. A
	// rollback of our own while the automatic one runs would make two,
	// and the second would switch back to the hostile version.
	rolledBack := false
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		n, q := activeVersion(t, p, kind)
		if n == goodName && !q {
			return
		}
		if n == name && !q && way == "push" && !rolledBack {
			rolledBack = true
			if a, err := admin(http.MethodPost, p.ops+"/admin/rollback/"+kind); err != nil || a.Status >= 300 {
				t.Logf("rollback: %d %v %v", a.Status, a.Body, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not return to %s within a minute", kind, goodName)
}
