package deploy

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/app"
)

var (
	startupRuns = flag.Int("startup-runs", 1, "start-ups of the start-up drill (task startup: 10)")
	heapProfile = flag.String("startup-heap-profile", "", "write the heap profile of an assembled server (once its policies are compiled, garbage collected) to this file, and that of the interpreted tier (right after start-up) beside it (-interpreted before the extension); with it or -startup-runs over 1, the drill also bounds the live heap")
)

// idleRSSLimit bounds the resident memory a second after every policy
// runs compiled: the target, 100 MiB. Measured 145 to 151 MiB (2
// processors) with the three default policies in three modules and two
// instances of each; 196 to 208 MiB before serve returned the garbage of
// loading the policies to the system.
const idleRSSLimit = 100 << 20

// readyTarget is the start-up's target, exec to /readyz 200 with an
// empty compilation cache, for the median of the drill's runs (task
// startup): 9 s median before the tiered start, on the 2-processor
// development machine at a load average of 5.
const readyTarget = time.Second

var workDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "wingate-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// binary builds the server exactly as the Dockerfile's build line says,
// but for the output path, once per test process.
func binary(t *testing.T) string {
	t.Helper()
	im := readImage(t)
	buildOnce.Do(func() {
		words := slices.Clone(im.buildLine)
		var env []string
		for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
			env = append(env, words[0])
			words = words[1:]
		}
		o := slices.Index(words, "-o")
		if o < 0 || o+1 >= len(words) {
			buildErr = fmt.Errorf("build line %q has no -o", im.buildLine)
			return
		}
		built = filepath.Join(workDir, "wingate")
		words[o+1] = built
		cmd := exec.Command(words[0], words[1:]...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%s: %v\n%s", strings.Join(im.buildLine, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// TestBinaryIsStatic: the binary the Dockerfile's line builds runs on a
// base image without a C library: no interpreter, no shared library, and
// it was built as the line says (cgo off, paths trimmed, symbols
// stripped).
func TestBinaryIsStatic(t *testing.T) {
	bin := binary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v: the binary is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: not built with -s")
	}
	if f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil {
		t.Error("the binary has DWARF: not built with -w")
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// (-ldflags is not recorded under -trimpath: the sections above
	// show it.)
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings %v: want CGO_ENABLED=0 and -trimpath", settings)
	}
}

// TestEntrypointCommands: the image's entrypoint and the compose health
// check are subcommands of the binary with flags it accepts (each asked
// for its help, which parses the flags given before -h).
func TestEntrypointCommands(t *testing.T) {
	bin := binary(t)
	im := readImage(t)
	compose := readYAML(t, filepath.Join(repoRoot(t), "deploy", "compose.yaml"))[0]
	hc := list(t, compose, "services", "wingate-1", "healthcheck", "test")
	for _, args := range [][]string{im.entrypoint[1:], anyStrings(hc[2:])} {
		cmd := exec.Command(bin, append(slices.Clone(args), "-h")...)
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "wingate "+args[0]) {
			t.Errorf("%s %v -h: %v\n%s", bin, args, err, out)
		}
	}
	out, _ := exec.Command(bin, "no-such-command").CombinedOutput()
	if !strings.Contains(string(out), "unknown command") {
		t.Errorf("an unknown command is not refused: %s", out)
	}
}

func anyStrings(xs []any) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.(string)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startup is one start of the drill.
type startup struct {
	ready    time.Duration // exec to /readyz 200
	cpu      time.Duration // user + system CPU at ready
	readyRSS int64         // VmRSS one second after ready (policies may still compile)
	compiled time.Duration // exec to every active policy running compiled
	peak     int64         // VmHWM then: the most resident memory so far
	rss      int64         // VmRSS one second after compiled: idle
}

// procCPU returns pid's user + system CPU time.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func procRSS(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmRSS") }

// procStatus reads a size field of pid's /proc status (VmRSS, VmHWM).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s", field)
	return 0
}

// body returns url's body, or "" when it does not answer 200.
func body(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// tiers counts the active policies of a /metrics exposition by tier
// (wingate_policy_active's exec_tier label).
func tiers(metrics string) (compiled, interpreted int) {
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, "wingate_policy_active{") {
			continue
		}
		switch {
		case strings.Contains(line, `exec_tier="compiled"`):
			compiled++
		case strings.Contains(line, `exec_tier="interpreted"`):
			interpreted++
		}
	}
	return compiled, interpreted
}

func get(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestStartupDrill starts the binary built as the Dockerfile builds it
// with the Kubernetes Deployment's environment over the image's, each
// time with an empty compilation cache, and measures the time from exec
// to /readyz answering 200 (the policies then serve interpreted: a
// tiered start), the CPU spent by then and the resident memory a second
// later; then the time until every policy runs compiled (the operators'
// /metrics), the most memory resident by then (VmHWM) and the idle
// resident memory a second after. Differences from the pod: loopback
// addresses on free ports, the repository's policies/, no DATABASE_URL
// or REDIS_URL (the in-memory store and the in-process cache), a 1 s
// drain delay. Bounds: ready within the startup probe's budget, every
// policy ready on the interpreted tier and compiled within it too, the
// peak under the container's memory limit, idle RSS under its memory
// request and idleRSSLimit; with -startup-runs over 1 (task startup),
// the median ready within readyTarget. The first start also checks the
// listeners (probes on the public one, /metrics on the operators' one
// only), the compose health check command, that the cache fills
// XDG_CACHE_HOME, and the drain: /readyz 503 at once on SIGTERM while
// /healthz answers, then exit within the drain delay and the shutdown
// timeout. With -startup-runs over 1 it also assembles the server in
// process and bounds its live heap once compiled.
func TestStartupDrill(t *testing.T) {
	bin := binary(t)
	im := readImage(t)
	m := readK8s(t)
	c, k8sEnv := m.container(t, im)
	compose := readYAML(t, filepath.Join(repoRoot(t), "deploy", "compose.yaml"))[0]
	healthArgs := anyStrings(list(t, compose, "services", "wingate-1", "healthcheck", "test")[2:])
	sp := at(t, c, "startupProbe")
	budget := time.Duration(num(t, sp, "periodSeconds")*num(t, sp, "failureThreshold")) * time.Second
	request := memBytes(t, str(t, c, "resources", "requests", "memory"))
	limit := memBytes(t, str(t, c, "resources", "limits", "memory"))
	policies := filepath.Join(repoRoot(t), "policies")
	if _, err := os.Stat(filepath.Join(policies, "bundle.wasm")); err != nil {
		t.Fatalf("policies/bundle.wasm: %v (run go generate ./policies)", err)
	}

	var runs []startup
	var lastCache string
	for i := range *startupRuns {
		env := map[string]string{}
		for k, v := range k8sEnv {
			env[k] = v
		}
		delete(env, "DATABASE_URL")
		delete(env, "REDIS_URL")
		public, ops := freeAddr(t), freeAddr(t)
		lastCache = filepath.Join(workDir, fmt.Sprintf("cache-%d", i))
		env["WINGATE_ADDR"], env["WINGATE_OPS_ADDR"] = public, ops
		env["WINGATE_POLICY_DIR"] = policies
		env["XDG_CACHE_HOME"] = lastCache
		env["WINGATE_DRAIN_DELAY"] = "1s"
		env["WINGATE_LOG_LEVEL"] = "warn"
		cfg := load(t, "drill", env)
		var envList []string
		for k, v := range env {
			envList = append(envList, k+"="+v)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(bin, im.entrypoint[1:]...)
		cmd.Env = envList
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		var s startup
		for {
			if get("http://"+public+"/readyz") == http.StatusOK {
				s.ready = time.Since(start)
				s.cpu = procCPU(t, cmd.Process.Pid)
				break
			}
			select {
			case err := <-exited:
				t.Fatalf("run %d: the server exited before ready: %v\n%s", i, err, stderr.String())
			default:
			}
			if time.Since(start) > budget {
				stop()
				t.Fatalf("run %d: not ready within the startup probe's %s\n%s", i, budget, stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second)
		s.readyRSS = procRSS(t, cmd.Process.Pid)
		// Ready means the policies' own decisions: every kind has its
		// policy active, interpreted or compiled.
		if c, n := tiers(body("http://" + ops + "/metrics")); c+n != 3 {
			t.Errorf("run %d: ready with %d policies compiled and %d interpreted, want all 3 kinds active", i, c, n)
		}
		// Polled on the operators' /readyz, whose detail names each
		// kind's tier: a small answer (a scrape of /metrics every few
		// milliseconds would leave garbage in the figure measured next).
		for {
			if d := body("http://" + ops + "/readyz"); strings.Contains(d, `"detail":"cache compiled, route compiled, compress compiled"`) {
				s.compiled = time.Since(start)
				s.peak = procStatus(t, cmd.Process.Pid, "VmHWM")
				break
			}
			if time.Since(start) > budget {
				stop()
				t.Fatalf("run %d: the policies are not all compiled after the startup probe's %s\n%s", i, budget, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second)
		s.rss = procRSS(t, cmd.Process.Pid)
		if c, n := tiers(body("http://" + ops + "/metrics")); c != 3 || n != 0 {
			t.Errorf("run %d: /metrics shows %d policies compiled and %d interpreted once /readyz says all 3 are compiled", i, c, n)
		}
		runs = append(runs, s)
		t.Logf("run %d: ready after %s (CPU %s), RSS a second later %.1f MiB; compiled after %s, peak %.1f MiB, idle RSS %.1f MiB",
			i, s.ready.Round(time.Millisecond), s.cpu.Round(10*time.Millisecond), float64(s.readyRSS)/(1<<20),
			s.compiled.Round(time.Millisecond), float64(s.peak)/(1<<20), float64(s.rss)/(1<<20))
		if i > 0 {
			cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			continue
		}

		for _, probe := range []struct {
			url  string
			want int
		}{
			{"http://" + public + "/healthz", 200},
			{"http://" + public + "/readyz", 200},
			{"http://" + public + "/metrics", 404},
			{"http://" + ops + "/metrics", 200},
			{"http://" + ops + "/readyz", 200},
		} {
			if got := get(probe.url); got != probe.want {
				t.Errorf("GET %s: %d, want %d", probe.url, got, probe.want)
			}
		}
		hc := exec.Command(bin, healthArgs...)
		hc.Env = envList
		if out, err := hc.CombinedOutput(); err != nil {
			t.Errorf("the compose health check %v: %v\n%s", healthArgs, err, out)
		}
		files := 0
		filepath.WalkDir(lastCache, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				files++
			}
			return nil
		})
		if files == 0 {
			t.Errorf("XDG_CACHE_HOME %s holds no file after start-up: the compilation cache is elsewhere", lastCache)
		}
		// Drain.
		signalled := time.Now()
		cmd.Process.Signal(syscall.SIGTERM)
		for get("http://"+public+"/readyz") != http.StatusServiceUnavailable {
			if time.Since(signalled) > cfg.DrainDelay/2 {
				t.Errorf("/readyz not 503 within %s of SIGTERM", cfg.DrainDelay/2)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := get("http://" + public + "/healthz"); got != 200 && time.Since(signalled) < cfg.DrainDelay {
			t.Errorf("/healthz during the drain delay: %d, want 200", got)
		}
		hc = exec.Command(bin, healthArgs...)
		hc.Env = envList
		if err := hc.Run(); err == nil && time.Since(signalled) < cfg.DrainDelay {
			t.Error("the compose health check passes while draining")
		}
		select {
		case err := <-exited:
			if d := time.Since(signalled); d < cfg.DrainDelay {
				t.Errorf("exited %s after SIGTERM, before the drain delay %s", d, cfg.DrainDelay)
			}
			if err != nil {
				t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(cfg.DrainDelay + cfg.ShutdownTimeout + 2*time.Second):
			stop()
			t.Errorf("still running %s after SIGTERM", cfg.DrainDelay+cfg.ShutdownTimeout+2*time.Second)
		}
	}

	median := func(xs []time.Duration) time.Duration {
		s := slices.Clone(xs)
		slices.Sort(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	var ready, cpu, readyRSS, compiled, peak, rss []time.Duration
	var maxRSS, maxPeak int64
	for _, r := range runs {
		ready, cpu, rss = append(ready, r.ready), append(cpu, r.cpu), append(rss, time.Duration(r.rss))
		readyRSS, compiled, peak = append(readyRSS, time.Duration(r.readyRSS)), append(compiled, r.compiled), append(peak, time.Duration(r.peak))
		maxRSS, maxPeak = max(maxRSS, r.rss), max(maxPeak, r.peak)
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	mib := func(d time.Duration) float64 { return float64(d) / (1 << 20) }
	t.Logf("%d start-ups with an empty cache, %d processors, load average %s: ready median %s, max %s; CPU at ready median %s; RSS a second after ready median %.1f MiB, max %.1f MiB; "+
		"compiled median %s, max %s; peak RSS median %.1f MiB, max %.1f MiB; idle RSS median %.1f MiB, max %.1f MiB",
		len(runs), runtime.NumCPU(), load, median(ready).Round(time.Millisecond), slices.Max(ready).Round(time.Millisecond),
		median(cpu).Round(10*time.Millisecond), mib(median(readyRSS)), mib(slices.Max(readyRSS)),
		median(compiled).Round(time.Millisecond), slices.Max(compiled).Round(time.Millisecond),
		mib(median(peak)), mib(slices.Max(peak)), mib(median(rss)), mib(slices.Max(rss)))
	if maxRSS > request {
		t.Errorf("idle RSS %.1f MiB over the container's memory request %.1f MiB", float64(maxRSS)/(1<<20), float64(request)/(1<<20))
	}
	// The 100 MiB figure is the drill's (task startup, on a machine not
	// running the rest of the suite beside it): under the suite's load
	// the short run's one start has been seen at 207 MiB a second after
	// compiling, the interpreter's memory not yet returned.
	if maxRSS > idleRSSLimit && len(runs) > 1 {
		t.Errorf("idle RSS %.1f MiB over %d MiB", float64(maxRSS)/(1<<20), idleRSSLimit>>20)
	}
	if maxPeak > limit {
		t.Errorf("peak RSS %.1f MiB over the container's memory limit %.1f MiB", float64(maxPeak)/(1<<20), float64(limit)/(1<<20))
	}
	if len(runs) > 1 && median(ready) > readyTarget {
		t.Errorf("ready median %s, over the target %s", median(ready).Round(time.Millisecond), readyTarget)
	}

	// What the heap holds once started: the same assembly in this
	// process, collected. It compiles the modules again (a test binary
	// keys its compilation cache apart from the built binary's), seconds
	// of CPU, tens of seconds under the race detector: task startup only.
	if *startupRuns < 2 && *heapProfile == "" {
		return
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cfg := app.Defaults()
	cfg.PolicyDir = policies
	cfg.JWTSecret = "deploy-test-jwt-secret-0123456789abcdef"
	began := time.Now()
	a, err := app.Build(context.Background(), cfg, app.Options{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in-process assembly: %s", time.Since(began).Round(time.Millisecond))
	defer a.Stop(context.Background())
	live := func() float64 {
		runtime.GC()
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(sample)
		return float64(sample[0].Value.Uint64()) / (1 << 20)
	}
	// The interpreted tier, the compilation under way.
	interpreted := live()
	t.Logf("live heap of an assembled server, policies interpreted (compiling): %.1f MiB", interpreted)
	writeHeap(t, strings.TrimSuffix(*heapProfile, filepath.Ext(*heapProfile))+"-interpreted"+filepath.Ext(*heapProfile))
	if err := a.AwaitPoliciesCompiled(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("policies compiled %s after the assembly began", time.Since(began).Round(time.Millisecond))
	compiledHeap := live()
	t.Logf("live heap of an assembled server, policies compiled: %.1f MiB", compiledHeap)
	if compiledHeap > 96 {
		t.Errorf("live heap %.1f MiB once compiled, over 96 MiB", compiledHeap)
	}
	writeHeap(t, *heapProfile)
}

// writeHeap writes the heap profile to path, unless path is empty or
// has no name.
func writeHeap(t *testing.T, path string) {
	t.Helper()
	if *heapProfile == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}
