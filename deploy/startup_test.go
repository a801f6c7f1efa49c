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
	heapProfile = flag.String("startup-heap-profile", "", "write the heap profile of an assembled server (after start-up, garbage collected) to this file; with it or -startup-runs over 1, the drill also bounds the live heap")
)

// idleRSSLimit bounds the resident memory a second after ready: 145 to
// 151 MiB measured (2 processors), 196 to 208 MiB before serve returned
// the garbage of loading the policies to the system.
const idleRSSLimit = 180 << 20

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
	ready time.Duration // exec to /readyz 200
	cpu   time.Duration // user + system CPU at ready
	rss   int64         // VmRSS one second after ready
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

func procRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
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
// to /readyz answering 200, the CPU spent by then and the resident
// memory a second later. Differences from the pod: loopback addresses
// on free ports, the repository's policies/, no DATABASE_URL or
// REDIS_URL (the in-memory store and the in-process cache), a 1 s drain
// delay. Bounds: ready within the startup probe's budget, idle RSS
// under the container's memory request and idleRSSLimit. The first start also checks
// the listeners (probes on the public one, /metrics on the operators'
// one only), the compose health check command, that the cache fills
// XDG_CACHE_HOME, and the drain: /readyz 503 at once on SIGTERM while
// /healthz answers, then exit within the drain delay and the shutdown
// timeout. With -startup-runs over 1 (task startup) it also assembles
// the server in process and bounds its live heap.
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
	policies := filepath.Join(repoRoot(t), "policies")
	if _, err := os.Stat(filepath.Join(policies, "route.wasm")); err != nil {
		t.Fatalf("policies/route.wasm: %v (run go generate ./policies)", err)
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
		s.rss = procRSS(t, cmd.Process.Pid)
		runs = append(runs, s)
		t.Logf("run %d: ready after %s, CPU %s, RSS %.1f MiB", i, s.ready.Round(time.Millisecond), s.cpu.Round(10*time.Millisecond), float64(s.rss)/(1<<20))
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
	var ready, cpu, rss []time.Duration
	var maxRSS int64
	for _, r := range runs {
		ready, cpu, rss = append(ready, r.ready), append(cpu, r.cpu), append(rss, time.Duration(r.rss))
		maxRSS = max(maxRSS, r.rss)
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	t.Logf("%d start-ups with an empty cache, %d processors, load average %s: ready median %s, max %s; CPU at ready median %s; idle RSS median %.1f MiB, max %.1f MiB",
		len(runs), runtime.NumCPU(), load, median(ready).Round(time.Millisecond), slices.Max(ready).Round(time.Millisecond),
		median(cpu).Round(10*time.Millisecond), float64(median(rss))/(1<<20), float64(maxRSS)/(1<<20))
	if maxRSS > request {
		t.Errorf("idle RSS %.1f MiB over the container's memory request %.1f MiB", float64(maxRSS)/(1<<20), float64(request)/(1<<20))
	}
	if maxRSS > idleRSSLimit {
		t.Errorf("idle RSS %.1f MiB over %d MiB", float64(maxRSS)/(1<<20), idleRSSLimit>>20)
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
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	live := sample[0].Value.Uint64()
	t.Logf("live heap of an assembled server: %.1f MiB", float64(live)/(1<<20))
	if live > 96<<20 {
		t.Errorf("live heap %.1f MiB after start-up, over 96 MiB", float64(live)/(1<<20))
	}
	if *heapProfile != "" {
		f, err := os.Create(*heapProfile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
	}
}
