package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/loadgen"
)

// proc is a server in a child process.
type proc struct {
	name, base string
	ops        string // the operators' listener ("" when the process has none)
	cmd        *exec.Cmd
}

func startProc(tb testing.TB, name string, cmd *exec.Cmd, base string) *proc {
	tb.Helper()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &proc{name: name, base: base, cmd: cmd}
	tb.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		res, err := http.Get(base + "/api/challenges")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s never answered: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cpu is the process's user and system CPU time (clock ticks of 10 ms).
func (p *proc) cpu(tb testing.TB) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

var wrkRPSLine = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
var wrkTotal = regexp.MustCompile(`(\d+) requests in`)

// wrkSaturated runs wrk -t2 -c100 for d against p's catalogue and returns
// requests per second and the server's CPU per request.
func wrkSaturated(tb testing.TB, wrk string, p *proc, d time.Duration) (float64, time.Duration) {
	tb.Helper()
	c0 := p.cpu(tb)
	out, err := exec.Command(wrk, "-t2", "-c100", fmt.Sprintf("-d%ds", int(d/time.Second)), p.base+"/api/challenges").CombinedOutput()
	if err != nil {
		tb.Fatalf("wrk: %v\n%s", err, out)
	}
	cpu := p.cpu(tb) - c0
	m, n := wrkRPSLine.FindSubmatch(out), wrkTotal.FindSubmatch(out)
	if m == nil || n == nil || strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
		tb.Fatalf("%s: wrk output:\n%s", p.name, out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	count, _ := strconv.Atoi(string(n[1]))
	return rps, cpu / time.Duration(max(count, 1))
}

// serverP99 is the catalogue's p99 over the last minute from the server's
// own latency windows (/dashboard/state), which measure each request
// inside the server.
func serverP99(tb testing.TB, p *proc) time.Duration {
	tb.Helper()
	res, err := http.Get(p.ops + "/dashboard/state")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var st struct {
		Metrics struct {
			Requests struct {
				Routes []struct {
					Method, Route string
					M1            struct{ P99 float64 }
				}
			}
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		tb.Fatal(err)
	}
	for _, r := range st.Metrics.Requests.Routes {
		if r.Method == "GET" && r.Route == "/api/challenges" {
			return time.Duration(r.M1.P99 * float64(time.Second))
		}
	}
	tb.Fatal("no /api/challenges in the dashboard's routes")
	return 0
}

// BenchmarkServeVsBareFiber compares `wingate serve`, built as the README
// builds it (go build -o wingate ./cmd/wingate) and run with its defaults,
// with a bare Fiber handler returning the same bytes, each in its own
// process, in one run on this machine (`task serve-bench`):
//
//  1. Saturated: wrk -t2 -c100 against each, alternating, 2 rounds of 5 s:
//     requests per second of cached catalogue hits (target ≥ 0.85× bare)
//     and each server's CPU per request.
//  2. Constant rate at 45% of the bare handler's mean maximum, 100
//     connections, from the project's load tool (loadgen.RunURL: latency
//     from the intended send time), alternating, 2 rounds of 5 s after 1 s
//     of warm-up: the p99 of each (target: Wingate ≤ 1.3× bare), with
//     Wingate's own p99 from its latency window beside it (a fresh Wingate
//     process for this phase, so that its one-minute window holds only
//     this load).
//
// It needs wrk (apt-get install wrk) and the built policies; it fails
// rather than skips without them. The figures are logged with -v.
func BenchmarkServeVsBareFiber(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk is not installed (apt-get install wrk)")
	}
	root := testkit.RepoRoot(b)
	policyDir(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "wingate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/wingate")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	serve := func() *proc {
		addr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(b))
		opsAddr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(b))
		cmd := exec.Command(bin, "serve", "--addr", addr, "--ops-addr", opsAddr, "--log-level", "warn", "--jwt-secret", testSecret)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "WINGATE_CONFIG=")
		p := startProc(b, "wingate", cmd, "http://"+addr)
		p.ops = "http://" + opsAddr
		return p
	}
	wg := serve()
	// The bare handler serves the very bytes Wingate's cache serves.
	res, err := http.Get(wg.base + "/api/challenges")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if x := res.Header.Get("X-Cache"); x != "HIT" {
		b.Fatalf("wingate's catalogue answered X-Cache %q, want HIT after the first request", x)
	}
	bodyFile := filepath.Join(dir, "body.json")
	os.WriteFile(bodyFile, body, 0o600)
	bareAddr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(b))
	self, _ := os.Executable()
	bcmd := exec.Command(self, "-test.run=^$")
	bcmd.Env = append(os.Environ(), "WINGATE_BARE_FIBER_ADDR="+bareAddr, "WINGATE_BARE_FIBER_BODY="+bodyFile)
	bare := startProc(b, "bare", bcmd, "http://"+bareAddr)

	const satRounds, satDur = 2, 5 * time.Second
	var bareRPS, wgRPS float64
	var bareCPU, wgCPU time.Duration
	for r := range satRounds {
		br, bc := wrkSaturated(b, wrk, bare, satDur)
		wr, wc := wrkSaturated(b, wrk, wg, satDur)
		b.Logf("saturated round %d: bare %.0f req/s (%v CPU/req), wingate %.0f req/s (%v CPU/req)", r+1, br, bc, wr, wc)
		bareRPS, wgRPS, bareCPU, wgCPU = bareRPS+br, wgRPS+wr, bareCPU+bc, wgCPU+wc
	}
	bareRPS, wgRPS = bareRPS/satRounds, wgRPS/satRounds
	ratio := wgRPS / bareRPS
	b.Logf("saturated (wrk -t2 -c100, mean of %d rounds): bare %.0f req/s, wingate %.0f req/s: ratio %.2f (target ≥ 0.85); CPU per request bare %v, wingate %v",
		satRounds, bareRPS, wgRPS, ratio, bareCPU/satRounds, wgCPU/satRounds)

	rate := 0.45 * bareRPS
	fresh := serve() // its latency window holds this phase only
	var bareP99, wgP99 []time.Duration
	for r := range 2 {
		for _, p := range []*proc{bare, fresh} {
			rep, err := loadgen.RunURL(context.Background(), loadgen.URLConfig{URL: p.base + "/api/challenges",
				Connections: 100, Rate: rate, Duration: 5 * time.Second, Warmup: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			if rep.Errors != 0 || rep.Non2xx != 0 {
				b.Fatalf("%s at %.0f/s: %+v", p.name, rate, rep)
			}
			b.Logf("rate round %d, %s at %.0f/s: %.0f/s answered, p50 %v p99 %v p99.9 %v max %v, late %d",
				r+1, p.name, rate, rep.Throughput, rep.P50, rep.P99, rep.P999, rep.Max, rep.Late)
			if p == bare {
				bareP99 = append(bareP99, rep.P99)
			} else {
				wgP99 = append(wgP99, rep.P99)
			}
		}
	}
	own := serverP99(b, fresh)
	worstBare, worstWG := max(bareP99[0], bareP99[1]), max(wgP99[0], wgP99[1])
	p99Ratio := float64(worstWG) / float64(worstBare)
	b.Logf("constant rate %.0f/s (45%% of the bare maximum), 100 connections, latency from the intended send: p99 bare %v, wingate %v: ratio %.2f (target ≤ 1.3); wingate's own p99 (its window) %v",
		rate, bareP99, wgP99, p99Ratio, own)
	b.ReportMetric(ratio, "sat-ratio")
	b.ReportMetric(bareRPS, "bare-req/s")
	b.ReportMetric(wgRPS, "wingate-req/s")
	b.ReportMetric(p99Ratio, "p99-ratio")
	b.ReportMetric(float64(worstBare)/1e6, "bare-p99-ms")
	b.ReportMetric(float64(worstWG)/1e6, "wingate-p99-ms")
	b.ReportMetric(float64(own)/1e6, "wingate-own-p99-ms")
}
