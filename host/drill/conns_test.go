package drill

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The connection drills: `wingate serve` built by `go build ./cmd/wingate`
// as its own process, flooded with idle connections from client processes
// of their own (this test binary run again, TestFloodClient) on the source
// addresses 127.0.0.2 and up, while keep-alive clients opened before the
// flood send normal traffic.

// floodShape is the size of a flood drill.
type floodShape struct {
	NoFile  int           // the server's soft descriptor limit (--max-open-files; 0: the hard limit)
	Idle    int           // idle connections opened by the clients
	Clients int           // client processes, one source address each
	Hold    time.Duration // how long the clients hold their connections
	Workers int           // keep-alive clients of normal traffic
	Rate    float64       // their requests per second, in all
}

func floodSize() floodShape {
	if *full {
		// The machine's hard limit (20,000): 30,000 idle connections,
		// held within the server's 15 s read timeout.
		return floodShape{NoFile: 0, Idle: 30000, Clients: 3, Hold: 14 * time.Second, Workers: 16, Rate: 400}
	}
	return floodShape{NoFile: 2048, Idle: 3072, Clients: 2, Hold: 5 * time.Second, Workers: 8, Rate: 200}
}

// floodReport is a client process's account of its connections.
type floodReport struct {
	Opened     int     `json:"opened"`      // connections established
	DialErrors int     `json:"dial_errors"` // connects that failed
	Refused    int     `json:"refused"`     // answered 503 or 429 and closed
	Closed     int     `json:"closed"`      // closed by the server otherwise while held
	Held       int     `json:"held"`        // still open when the hold ended
	RefusedP50 float64 `json:"refused_p50_ms"`
	RefusedP99 float64 `json:"refused_p99_ms"`
	RefusedMax float64 `json:"refused_max_ms"` // from the connect to the server's close, as read
	// From the connect to the refusal's arrival in the client's kernel.
	ArrivedP50 float64 `json:"arrived_p50_ms"`
	ArrivedP99 float64 `json:"arrived_p99_ms"`
	ArrivedMax float64 `json:"arrived_max_ms"`
	// Each connect's duration (a SYN the kernel dropped for a full
	// accept queue is sent again after a second).
	DialP50  float64 `json:"dial_p50_ms"`
	DialP99  float64 `json:"dial_p99_ms"`
	DialMax  float64 `json:"dial_max_ms"`
	OpenMS   float64 `json:"open_ms"` // from the first connect to the last
	Statuses map[string]int
}

// floodDialers is how many connects a client process has in flight at
// once.
const floodDialers = 8

// floodEnv carries a client process's orders: server address, source
// address, connections, hold.
const floodEnv = "WINGATE_DRILL_FLOOD"

// TestFloodClient is the client process of the flood drills; it does
// nothing unless started by one with floodEnv set. It opens its
// connections from its source address as fast as it can, sends nothing,
// times each connection the server closes (from the end of the connect
// to the end of the stream) and holds the rest until the hold ends.
func TestFloodClient(t *testing.T) {
	orders := os.Getenv(floodEnv)
	if orders == "" {
		return
	}
	f := strings.Split(orders, ",")
	if len(f) != 4 {
		t.Fatalf("%s=%q: want server,source,count,hold", floodEnv, orders)
	}
	n, _ := strconv.Atoi(f[2])
	hold, _ := time.ParseDuration(f[3])
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(f[1])}, Timeout: 5 * time.Second}
	var (
		mu      sync.Mutex
		rep     = floodReport{Statuses: map[string]int{}}
		refused durations
		// arrivedIn: from the connect to the refusal's arrival.
		arrivedIn durations
		dials     durations // each connect's duration
		conns     []net.Conn
		wg        sync.WaitGroup
		next      atomic.Int64
		deadline  = time.Now().Add(hold)
		began     = time.Now()
	)
	for range floodDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
				dialed := time.Now()
				c, err := dialer.Dial("tcp", f[0])
				mu.Lock()
				dials = append(dials, time.Since(dialed))
				if err != nil {
					rep.DialErrors++
					mu.Unlock()
					continue
				}
				rep.Opened++
				rep.OpenMS = ms(time.Since(began))
				conns = append(conns, c)
				mu.Unlock()
				up := time.Now()
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = c.SetReadDeadline(deadline)
					head := make([]byte, 12)
					k, err := io.ReadFull(c, head)
					status := strings.TrimSpace(string(head[min(9, k):k]))
					// When the answer reached this host's kernel, which
					// leaves out this process's own delay in reading it
					// (three flood clients share two cores with the
					// server): TCP_INFO's time since the last data.
					arrived := time.Now().Add(-sinceLastData(c))
					if err == nil {
						_, err = io.Copy(io.Discard, c)
					}
					took := time.Since(up)
					mu.Lock()
					defer mu.Unlock()
					var ne net.Error
					switch {
					case errors.As(err, &ne) && ne.Timeout():
						rep.Held++
					case status == "503" || status == "429":
						rep.Refused++
						refused = append(refused, took)
						arrivedIn = append(arrivedIn, max(0, arrived.Sub(up)))
						rep.Statuses[status]++
					default:
						rep.Closed++
						rep.Statuses["closed:"+status]++
					}
				}()
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	rep.RefusedP50, rep.RefusedP99, rep.RefusedMax = ms(refused.quantile(0.5)), ms(refused.quantile(0.99)), ms(refused.quantile(1))
	rep.DialP50, rep.DialP99, rep.DialMax = ms(dials.quantile(0.5)), ms(dials.quantile(0.99)), ms(dials.quantile(1))
	rep.ArrivedP50, rep.ArrivedP99, rep.ArrivedMax = ms(arrivedIn.quantile(0.5)), ms(arrivedIn.quantile(0.99)), ms(arrivedIn.quantile(1))
	b, _ := json.Marshal(rep)
	fmt.Println("FLOOD " + string(b))
}

// startFlood starts the client processes, each opening its share of n
// connections to addr from 127.0.0.(2+i).
func startFlood(t *testing.T, addr string, n, clients int, hold time.Duration) func() []floodReport {
	t.Helper()
	type child struct {
		cmd *exec.Cmd
		out *testkit.SyncBuffer
	}
	var kids []child
	for i := range clients {
		share := n / clients
		if i == 0 {
			share += n % clients
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestFloodClient$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,127.0.0.%d,%d,%s", floodEnv, addr, 2+i, share, hold))
		out := &testkit.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		kids = append(kids, child{cmd, out})
	}
	return func() []floodReport {
		var reps []floodReport
		for i, k := range kids {
			if err := k.cmd.Wait(); err != nil {
				t.Errorf("flood client %d: %v\n%s", i, err, k.out.String())
				continue
			}
			_, line, ok := strings.Cut(k.out.String(), "FLOOD ")
			line, _, _ = strings.Cut(line, "\n")
			var r floodReport
			if err := json.Unmarshal([]byte(line), &r); !ok || err != nil {
				t.Errorf("flood client %d: no report (%v):\n%s", i, err, k.out.String())
				continue
			}
			reps = append(reps, r)
		}
		return reps
	}
}

// keepAlive is normal traffic over connections opened before a flood:
// each worker sends GET /healthz and GET /api/challenges in turn on its
// own connection at an even share of the rate, and dials again only
// when its connection fails (which counts as an error).
type keepAlive struct {
	mu    sync.Mutex
	lat   []sample
	errs  map[string]int
	stop  chan struct{}
	done  sync.WaitGroup
	reqs  atomic.Int64
	ready sync.WaitGroup
}

type sample struct {
	at  time.Time
	lat time.Duration
}

func startKeepAlive(t *testing.T, addr string, workers int, rate float64) *keepAlive {
	t.Helper()
	k := &keepAlive{errs: map[string]int{}, stop: make(chan struct{})}
	every := time.Duration(float64(workers) / rate * float64(time.Second))
	paths := []string{"/healthz", "/api/challenges?limit=5"}
	for w := range workers {
		k.done.Add(1)
		k.ready.Add(1)
		go func() {
			defer k.done.Done()
			var (
				c  net.Conn
				br *bufio.Reader
			)
			dial := func() error {
				var err error
				if c, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
					br = bufio.NewReader(c)
				}
				return err
			}
			if err := dial(); err != nil {
				t.Errorf("keep-alive client: %v", err)
			}
			k.ready.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := w; ; i++ {
				select {
				case <-k.stop:
					if c != nil {
						c.Close()
					}
					return
				case <-tick.C:
				}
				if c == nil {
					if err := dial(); err != nil {
						k.fail("dial: " + errClass(err))
						continue
					}
				}
				t0 := time.Now()
				err := roundTrip(c, br, paths[i%len(paths)])
				k.reqs.Add(1)
				if err != nil {
					k.fail(errClass(err))
					c.Close()
					c = nil
					continue
				}
				k.mu.Lock()
				k.lat = append(k.lat, sample{t0, time.Since(t0)})
				k.mu.Unlock()
			}
		}()
	}
	k.ready.Wait()
	return k
}

func (k *keepAlive) fail(class string) {
	k.mu.Lock()
	k.errs[class]++
	k.mu.Unlock()
}

// roundTrip sends GET path on c and reads a 200 answer.
func roundTrip(c net.Conn, br *bufio.Reader, path string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: drill\r\n\r\n", path); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

func errClass(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.HasPrefix(err.Error(), "status "):
		return err.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	}
	return "network"
}

// window returns the p99 latency and count of the samples started in
// [from, to).
func (k *keepAlive) window(from, to time.Time) (time.Duration, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var d durations
	for _, s := range k.lat {
		if !s.at.Before(from) && s.at.Before(to) {
			d = append(d, s.lat)
		}
	}
	return d.quantile(0.99), len(d)
}

func (k *keepAlive) finish() (requests int64, errs map[string]int) {
	close(k.stop)
	k.done.Wait()
	return k.reqs.Load(), k.errs
}

// openFDs counts the process's open descriptors.
func (p *proc) openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// alive fails the test when the process has exited.
func (p *proc) alive(t *testing.T, when string) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("serve exited %s (%v): %s", when, err, p.tail(4096))
	default:
	}
}

// TestDrillConnFlood: 1.5× the server's descriptor limit of idle
// connections from two (three with -drill) client processes while
// keep-alive clients opened earlier send normal traffic. The process
// stays up, the earlier connections keep being answered (< 1% errors),
// every connection over the cap is answered 503 and closed within 100 ms
// of its connect, and once the flood ends the traffic's p99 is back to
// its figure before the flood within 10 s.
func TestDrillConnFlood(t *testing.T) {
	s := floodSize()
	args := []string{}
	if s.NoFile > 0 {
		args = append(args, "--max-open-files", strconv.Itoa(s.NoFile))
	}
	p := startProc(t, policyDir(t), args...)
	addr := strings.TrimPrefix(p.base, "http://")
	limit := s.NoFile
	if limit == 0 {
		limit = 20000
	}
	if !strings.Contains(p.tail(1<<20), fmt.Sprintf("soft=%d", limit)) {
		t.Fatalf("the server did not report a soft descriptor limit of %d: %s", limit, p.tail(8192))
	}
	if s.Idle*2 < limit*3 {
		t.Fatalf("flood of %d connections is under 1.5× the limit %d", s.Idle, limit)
	}
	ka := startKeepAlive(t, addr, s.Workers, s.Rate)
	t0 := time.Now()
	time.Sleep(3 * time.Second)
	base, baseN := ka.window(t0.Add(time.Second), time.Now())
	fdBefore := p.openFDs(t)

	floodAt := time.Now()
	wait := startFlood(t, addr, s.Idle, s.Clients, s.Hold)
	// /healthz keeps answering on the earlier connections during the
	// flood (the keep-alive traffic); the peak of descriptors is sampled.
	fdPeak := 0
	var probes durations
	for time.Since(floodAt) < s.Hold-time.Second {
		if time.Since(floodAt) > s.Hold/2 && len(probes) == 0 {
			probes = probeRefusals(t, addr, 100)
		}
		p.alive(t, "during the flood")
		fdPeak = max(fdPeak, p.openFDs(t))
		time.Sleep(200 * time.Millisecond)
	}
	reps := wait()
	floodEnd := time.Now()
	during, duringN := ka.window(floodAt, floodEnd)
	p.alive(t, "after the flood")

	// Recovery: the first whole second after the flood whose p99 is back
	// within the tolerance of the figure before it.
	tolerance := 2*base + 2*time.Millisecond
	var recovered time.Duration
	for sec := range 10 {
		from := floodEnd.Add(time.Duration(sec) * time.Second)
		for time.Now().Before(from.Add(time.Second)) {
			time.Sleep(50 * time.Millisecond)
		}
		if p99, n := ka.window(from, from.Add(time.Second)); n > 0 && p99 <= tolerance {
			recovered = time.Since(floodEnd)
			t.Logf("after the flood: p99 %v over %d requests in second %d", p99, n, sec+1)
			break
		}
	}
	reqs, errs := ka.finish()
	var nerr int
	for _, n := range errs {
		nerr += n
	}
	p.alive(t, "at the end")

	var tot floodReport
	maxRefused, maxP99, maxP50, openMS := 0.0, 0.0, 0.0, 0.0
	arrMax, arrP99, arrP50 := 0.0, 0.0, 0.0
	dialMax, dialP99, dialP50 := 0.0, 0.0, 0.0
	for _, r := range reps {
		tot.Opened += r.Opened
		openMS = max(openMS, r.OpenMS)
		tot.DialErrors += r.DialErrors
		tot.Refused += r.Refused
		tot.Closed += r.Closed
		tot.Held += r.Held
		maxRefused, maxP99, maxP50 = max(maxRefused, r.RefusedMax), max(maxP99, r.RefusedP99), max(maxP50, r.RefusedP50)
		arrMax, arrP99, arrP50 = max(arrMax, r.ArrivedMax), max(arrP99, r.ArrivedP99), max(arrP50, r.ArrivedP50)
		dialMax, dialP99, dialP50 = max(dialMax, r.DialMax), max(dialP99, r.DialP99), max(dialP50, r.DialP50)
	}
	t.Logf("server: soft descriptor limit %d; descriptors %d before the flood, peak %d", limit, fdBefore, fdPeak)
	t.Logf("flood: %d clients, %d connections asked, %d opened, %d dial errors; %d refused (503/429), %d held to the end, %d closed otherwise",
		len(reps), s.Idle, tot.Opened, tot.DialErrors, tot.Refused, tot.Held, tot.Closed)
	t.Logf("connect: p50 %.1f ms, p99 %.1f ms, max %.1f ms (worst client)", dialP50, dialP99, dialMax)
	t.Logf("refusal: from connect to the answer's arrival p50 %.1f ms, p99 %.1f ms, max %.1f ms (worst client)", arrP50, arrP99, arrMax)
	t.Logf("refusal: from connect to close as read p50 %.1f ms, p99 %.1f ms, max %.1f ms (worst client); flood opened in %v",
		maxP50, maxP99, maxRefused, time.Duration(openMS*float64(time.Millisecond)).Round(time.Millisecond))
	t.Logf("refusal of single connections at the cap: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d",
		ms(probes.quantile(0.5)), ms(probes.quantile(0.99)), ms(probes.quantile(1)), len(probes))
	t.Logf("traffic: %d requests on earlier connections, %d errors %v; p99 %v before (%d requests), %v during (%d)", reqs, nerr, errs, base, baseN, during, duringN)
	t.Logf("recovery: p99 within %v of the figure before after %v", tolerance, recovered.Round(time.Millisecond))
	if len(reps) != s.Clients {
		t.Fatalf("%d of %d client reports", len(reps), s.Clients)
	}
	if tot.Refused == 0 {
		t.Error("no connection was refused: the flood did not reach the cap")
	}
	if tot.Opened < s.Idle*9/10 {
		t.Errorf("only %d of %d connections were opened: the flood did not happen", tot.Opened, s.Idle)
	}
	// The server refuses a connection over its cap as soon as it accepts
	// it: 100 ms is the bound for one arriving at the cap. In the burst
	// the wait in the kernel's accept queue adds to it (the clients
	// connect faster than two shared cores accept); there the bound is a
	// second, far below the 15 s a connection would wait if it were
	// served and timed out instead of refused.
	if len(probes) < 50 {
		t.Errorf("only %d of 100 connections at the cap were refused", len(probes))
	} else if p99 := probes.quantile(0.99); p99 > 100*time.Millisecond {
		t.Errorf("connections at the cap were closed after %v (p99); want ≤ 100 ms", p99)
	}
	if maxRefused > 1000 {
		t.Errorf("an excess connection of the burst took %.1f ms to be closed; want ≤ 1 s", maxRefused)
	}
	// The full drill: the burst's refusals reach their clients within
	// 100 ms of the connect (p99, worst client), the accept queue bounded
	// by the default listen backlog.
	if *full && arrP99 > 100 {
		t.Errorf("the burst's refusals arrived %.1f ms after the connect (p99); want ≤ 100 ms", arrP99)
	}
	if reqs == 0 || float64(nerr) > 0.01*float64(reqs) {
		t.Errorf("normal traffic: %d errors in %d requests; want < 1%%", nerr, reqs)
	}
	if recovered == 0 {
		t.Errorf("p99 not back within %v of the figure before the flood (%v) within 10 s", tolerance, base)
	}
	if fdPeak >= limit {
		t.Errorf("descriptor peak %d reached the limit %d", fdPeak, limit)
	}
}

// probeRefusals opens up to n connections one after another (for 3 s at
// most) while the server is at its cap, and times each from its connect
// to the server's close; a connection not refused within 200 ms is not
// counted.
func probeRefusals(t *testing.T, addr string, n int) durations {
	t.Helper()
	var d durations
	end := time.Now().Add(3 * time.Second)
	for i := 0; i < n && time.Now().Before(end); i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		up := time.Now()
		_ = c.SetReadDeadline(up.Add(200 * time.Millisecond))
		head := make([]byte, 12)
		k, _ := io.ReadFull(c, head)
		if strings.HasPrefix(string(head[:k]), "HTTP/1.1 503") {
			_, _ = io.Copy(io.Discard, c)
			d = append(d, time.Since(up))
		}
		c.Close()
	}
	return d
}

// TestDrillDescriptorExhaustion: a server whose connection cap is set
// above its descriptor limit (256) runs out of descriptors under 400
// idle connections. It must not exit: accepts back off while the
// connections it has, opened earlier, keep being answered; the episode is
// logged once and counted; when the idle connections close it accepts
// again.
func TestDrillDescriptorExhaustion(t *testing.T) {
	const noFile, flood = 256, 400
	p := startProc(t, policyDir(t), "--max-open-files", strconv.Itoa(noFile), "--max-conns", "4000")
	addr := strings.TrimPrefix(p.base, "http://")
	ka := startKeepAlive(t, addr, 2, 50)
	var conns []net.Conn
	for range flood {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			break // the accept queue is full: the kernel stopped answering
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.tail(1<<20), "out of descriptors") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	fds := p.openFDs(t)
	time.Sleep(2 * time.Second) // exhausted, backing off, serving the earlier connections
	p.alive(t, "out of descriptors")
	exhausted := time.Now()
	for _, c := range conns {
		c.Close()
	}
	// The earlier connections were answered throughout; new ones are
	// accepted again once the idle ones are gone.
	var (
		st   int
		body string
		err  error
	)
	for time.Since(exhausted) < 10*time.Second {
		var resp *http.Response
		if resp, err = http.Get(p.ops + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if st, body = resp.StatusCode, string(b); st == http.StatusOK {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	reqs, errs := ka.finish()
	log := p.tail(1 << 20)
	t.Logf("%d connections opened by the client, server descriptors %d of %d; %d requests on earlier connections, errors %v",
		len(conns), fds, noFile, reqs, errs)
	failures := ""
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "wingate_http_accept_failures_total") {
			failures = line
		}
	}
	t.Logf("metric: %s; log: %d line(s) out of descriptors, %d accepting again", failures,
		strings.Count(log, "out of descriptors"), strings.Count(log, "accepting connections again"))
	p.alive(t, "after the exhaustion")
	if err != nil || st != http.StatusOK {
		t.Fatalf("no new connection served after the idle ones closed: %d %v", st, err)
	}
	// Logged once an episode, not once a failed accept: a descriptor
	// freed for a moment (an accept succeeds) ends an episode, so a
	// second may follow.
	nFailed := 0
	if f := strings.Fields(failures); len(f) == 2 {
		nFailed, _ = strconv.Atoi(f[1])
	}
	if n, again := strings.Count(log, "out of descriptors"), strings.Count(log, "accepting connections again"); n < 1 || n > 3 || n >= nFailed || again < n-1 || again > n {
		t.Errorf("%d log lines about running out of descriptors and %d about accepting again for %d failed accepts; want one of each an episode (at most 3), fewer than the failures", n, again, nFailed)
	}
	if !strings.Contains(log, "accepting connections again") {
		t.Error("the end of the episode was not logged")
	}
	if f := strings.Fields(failures); len(f) != 2 || f[1] == "0" {
		t.Errorf("accept failures not counted: %q", failures)
	}
	if reqs == 0 || len(errs) != 0 {
		t.Errorf("traffic on the earlier connections: %d requests, errors %v; want none", reqs, errs)
	}
}

// sinceLastData is how long ago c last received data, by TCP_INFO
// (millisecond resolution); zero when it cannot tell.
func sinceLastData(c net.Conn) time.Duration {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var d time.Duration
	_ = raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			d = time.Duration(info.Last_data_recv) * time.Millisecond
		}
	})
	return d
}
