package drill

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// rollingShape is the size of one rolling-restart drill.
type rollingShape struct {
	Rate       int           // GET requests a second through the balancer
	StreamGap  time.Duration // a new streamed chat answer every StreamGap
	TokenDelay time.Duration // the simulated model's delay per token
	Settle     time.Duration // traffic before the first restart and after the last
	DrainDelay time.Duration // WINGATE_DRAIN_DELAY of each instance
}

func rollingSize() rollingShape {
	if *full {
		return rollingShape{Rate: 500, StreamGap: 100 * time.Millisecond, TokenDelay: 80 * time.Millisecond, Settle: 5 * time.Second, DrainDelay: 500 * time.Millisecond}
	}
	return rollingShape{Rate: 150, StreamGap: 250 * time.Millisecond, TokenDelay: 50 * time.Millisecond, Settle: 2 * time.Second, DrainDelay: 500 * time.Millisecond}
}

// balancerCheckEvery is how often HAProxy asks each instance's /readyz.
const balancerCheckEvery = 100 * time.Millisecond

// haproxyBinary returns Debian's haproxy (apt-get install haproxy; .ci/run
// installs it).
func haproxyBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("haproxy is not installed: apt-get install -y haproxy")
	return ""
}

// member is one instance of the fleet: `wingate serve` on fixed
// addresses, so that a restart comes back where the balancer expects it.
type member struct {
	name, addr, ops string
	args, env       []string
	cmd             *exec.Cmd
	done            chan error
	logPath         string
}

// start runs the binary and waits until its /readyz answers 200.
func (m *member) start(t *testing.T, bin string) time.Duration {
	t.Helper()
	t0 := time.Now()
	f, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--addr", m.addr, "--ops-addr", m.ops}, m.args...)...)
	cmd.Env = append(os.Environ(), m.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.cmd, m.done = cmd, make(chan error, 1)
	go func(done chan error) { done <- cmd.Wait(); f.Close() }(m.done)
	for {
		select {
		case err := <-m.done:
			m.done <- err
			t.Fatalf("%s exited before it was ready (%v): %s", m.name, err, tailFile(m.logPath, 4096))
		default:
		}
		if st, _, _, err := do(http.MethodGet, "http://"+m.addr+"/readyz", "", "", nil); err == nil && st == http.StatusOK {
			return time.Since(t0)
		}
		if time.Since(t0) > 3*time.Minute {
			t.Fatalf("%s not ready after 3 minutes: %s", m.name, tailFile(m.logPath, 4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (m *member) stop(t *testing.T) time.Duration {
	t.Helper()
	t0 := time.Now()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM: %s", m.name, err, tailFile(m.logPath, 4096))
		}
	case <-time.After(40 * time.Second):
		_ = m.cmd.Process.Kill()
		t.Fatalf("%s did not stop within 40 s of SIGTERM", m.name)
	}
	m.cmd = nil
	return time.Since(t0)
}

func tailFile(path string, n int64) string {
	b, _ := os.ReadFile(path)
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// startBalancer runs HAProxy in front of the members: a health check of
// /readyz every balancerCheckEvery (one failure takes an instance out,
// one success puts it back), a new server connection per request, and a
// retry on another instance only when a connection to one fails (nothing
// was sent). It returns the balancer's address.
func startBalancer(t *testing.T, members []*member) string {
	t.Helper()
	addr := freeAddr(t)
	var servers strings.Builder
	for _, m := range members {
		fmt.Fprintf(&servers, "  server %s %s check\n", m.name, m.addr)
	}
	cfg := fmt.Sprintf(`global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout check 1s
  retries 3
  option redispatch 1
  retry-on conn-failure
frontend public
  bind %s
  default_backend fleet
backend fleet
  balance roundrobin
  option http-server-close
  http-reuse never
  option httpchk GET /readyz
  http-check expect status 200
  http-response set-header X-Served-By %%[srv_name]
  default-server inter %dms fall 1 rise 1
%s`, addr, balancerCheckEvery.Milliseconds(), servers.String())
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(haproxyBinary(t), "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "haproxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxyBinary(t), "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	// Up when it answers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, _, _, err := do(http.MethodGet, "http://"+addr+"/healthz", "", "", nil); err == nil && st == http.StatusOK {
			time.Sleep(3 * balancerCheckEvery) // every check passed once
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not serving after 30 s: %s", tailFile(logPath, 4096))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDrillRollingRestart restarts each of three `wingate serve`
// instances in turn (SIGTERM, start, ready, next) behind HAProxy checking
// /readyz every 100 ms, while clients that never retry send GET requests
// at a constant rate and open streamed chat answers through the
// balancer: no request fails and no stream breaks on the client side.
// The instances drain as `wingate serve` does: /readyz fails first for
// WINGATE_DRAIN_DELAY, then the listener closes and the requests and
// streams in flight finish.
func TestDrillRollingRestart(t *testing.T) {
	s := rollingSize()
	bin := wingateBinary(t)
	dbURL := database(t)
	pdir := policyDir(t)
	logDir := t.TempDir()
	var members []*member
	for i := range 3 {
		m := &member{name: fmt.Sprintf("wingate%d", i+1), addr: freeAddr(t), ops: freeAddr(t),
			args: []string{"--jwt-secret", jwtSecret, "--admin-token", adminToken, "--policy-dir", pdir, "--log-level", "info"},
			env: []string{"DATABASE_URL=" + dbURL, "WINGATE_DRAIN_DELAY=" + s.DrainDelay.String(),
				"WINGATE_LLM_SIM_TOKEN_LATENCY=" + s.TokenDelay.String()},
			logPath: filepath.Join(logDir, fmt.Sprintf("wingate%d.log", i+1))}
		m.start(t, bin)
		members = append(members, m)
		t.Cleanup(func() {
			if m.cmd != nil {
				m.stop(t)
			}
		})
	}
	lb := startBalancer(t, members)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gets := runGets(ctx, lb, s.Rate)
	streams := runStreams(ctx, lb, s.StreamGap)

	sleepPhase(t, "before the restarts", s.Settle)
	var sigterms []time.Time
	for _, m := range members {
		sigterms = append(sigterms, time.Now())
		down := m.stop(t)
		up := m.start(t, bin)
		t.Logf("%s: stopped %v after SIGTERM, ready %v after start", m.name, down.Round(time.Millisecond), up.Round(time.Millisecond))
		// The balancer's next check puts it back.
		time.Sleep(3 * balancerCheckEvery)
	}
	sleepPhase(t, "after the restarts", s.Settle)
	cancel()
	g := gets.wait()
	st := streams.wait()

	t.Logf("GET through the balancer: %d sent, %d failed %v; p99 %v, max %v", g.sent, g.failed, g.errs, g.quantile(0.99), g.quantile(1))
	t.Logf("streams: %d opened, %d completed, %d broken %v; longest %v", st.sent, st.sent-st.failed, st.failed, st.errs, st.quantile(1))
	if g.sent < int64(s.Rate) {
		t.Errorf("only %d GET requests were sent", g.sent)
	}
	if g.failed > 0 {
		t.Errorf("%d of %d GET requests failed on the client side: %v", g.failed, g.sent, g.errs)
	}
	if st.sent < 3 {
		t.Errorf("only %d streams were opened", st.sent)
	}
	if st.failed > 0 {
		t.Errorf("%d of %d streams broke on the client side: %v", st.failed, st.sent, st.errs)
	}
	// Not vacuous: streams were open across the SIGTERMs, so instances
	// drained streams in flight. The drill (-drill) wants that of each
	// instance; the short run, whose few streams the balancer may happen
	// to send elsewhere at one instance's SIGTERM, of at least one.
	drained := 0
	for i, at := range sigterms {
		n := st.spanning(at, members[i].name)
		t.Logf("%s: %d of its streams open at its SIGTERM, finished while it drained", members[i].name, n)
		if n > 0 {
			drained++
		} else if *full {
			t.Errorf("no stream was open when %s got SIGTERM: the drill did not test draining streams", members[i].name)
		}
	}
	if drained == 0 {
		t.Error("no stream was open at any SIGTERM: the drill did not test draining streams")
	}
}

// clientTally counts one kind of client call.
type clientTally struct {
	mu     sync.Mutex
	sent   int64
	failed int64
	errs   map[string]int
	took   []time.Duration
	spans  []span
	wg     sync.WaitGroup
}

// span is one call: when it started and ended, and which instance served
// it (the balancer's X-Served-By).
type span struct {
	start, end time.Time
	server     string
}

func (c *clientTally) note(start time.Time, err error) { c.noteFrom(start, "", err) }

func (c *clientTally) noteFrom(start time.Time, server string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent++
	end := time.Now()
	c.took = append(c.took, end.Sub(start))
	c.spans = append(c.spans, span{start, end, server})
	if err != nil {
		c.failed++
		if c.errs == nil {
			c.errs = map[string]int{}
		}
		msg := err.Error()
		if len(msg) > 80 {
			msg = msg[:80]
		}
		c.errs[msg]++
	}
}

func (c *clientTally) wait() *clientTally {
	c.wg.Wait()
	slices.Sort(c.took)
	return c
}

// spanning returns how many calls served by server were in flight at t.
func (c *clientTally) spanning(t time.Time, server string) (n int) {
	for _, s := range c.spans {
		if s.server == server && s.start.Before(t) && s.end.After(t) {
			n++
		}
	}
	return n
}

func (c *clientTally) quantile(q float64) time.Duration {
	if len(c.took) == 0 {
		return 0
	}
	return c.took[min(len(c.took)-1, int(q*float64(len(c.took))))]
}

// runGets sends GET /api/challenges at rate a second until ctx ends,
// through a client that makes exactly one attempt per request.
func runGets(ctx context.Context, addr string, rate int) *clientTally {
	c := &clientTally{}
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 256, MaxIdemponentCallAttempts: 1, ReadTimeout: 20 * time.Second, WriteTimeout: 5 * time.Second}
	auth := "Bearer " + token(1)
	var inflight atomic.Int64
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if inflight.Load() > 256 {
				c.note(time.Now(), errors.New("client: more than 256 requests in flight"))
				continue
			}
			inflight.Add(1)
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer inflight.Add(-1)
				req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(res)
				req.SetRequestURI("http://" + addr + "/api/challenges")
				req.Header.Set("Authorization", auth)
				t0 := time.Now()
				err := hc.Do(req, res)
				if err == nil && res.StatusCode() != http.StatusOK {
					err = fmt.Errorf("status %d", res.StatusCode())
				}
				c.note(t0, err)
			}()
		}
	}()
	return c
}

// runStreams opens a streamed chat answer every gap until ctx ends and
// reads each to its end: one that ends without its final [DONE] event,
// or fails to start, is broken. A POST is never retried by the client.
func runStreams(ctx context.Context, addr string, gap time.Duration) *clientTally {
	c := &clientTally{}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
	body := `{"model": "auto", "stream": true, "messages": [{"role": "user", "content": "Give me three ideas for a first conversation at a climbing gym."}]}`
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(gap)
		defer tick.Stop()
		for n := int64(0); ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			c.wg.Add(1)
			go func(user int64) {
				defer c.wg.Done()
				t0 := time.Now()
				server, err := readStream(hc, addr, body, user)
				c.noteFrom(t0, server, err)
			}(1 + n%loadUsers)
		}
	}()
	return c
}

// readStream makes one streamed chat call and reads it to [DONE]; it
// returns the instance that served it.
func readStream(hc *http.Client, addr, body string, user int64) (server string, err error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token(user))
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	server = res.Header.Get("X-Served-By")
	if res.StatusCode != http.StatusOK {
		return server, fmt.Errorf("status %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	events := 0
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		if strings.TrimPrefix(line, "data: ") == "[DONE]" {
			if events == 0 {
				return server, errors.New("stream: [DONE] without a chunk")
			}
			return server, nil
		}
		if strings.Contains(line, `"error"`) {
			return server, fmt.Errorf("stream: error event: %.80s", line)
		}
		events++
	}
	if err := sc.Err(); err != nil {
		return server, fmt.Errorf("stream broken after %d events: %w", events, err)
	}
	return server, fmt.Errorf("stream ended after %d events without [DONE]", events)
}
