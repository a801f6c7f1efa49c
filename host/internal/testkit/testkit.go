// Package testkit holds the test fixtures that several packages' tests
// share: a private redis-server they may kill and restart, a probe of
// scheduler starvation, a TCP proxy that fakes a server failing, the
// repository root and module variants. It is imported only by tests.
package testkit

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server child process owned by one test, so that the test
// can kill and restart it without touching the machine's shared Redis. It
// keeps its port across restarts.
type Redis struct {
	tb   testing.TB
	port int
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server on a free loopback port and
// kills it when the test ends.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	r := &Redis{tb: tb, port: FreePort(tb)}
	r.Start()
	tb.Cleanup(r.Kill)
	return r
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Addr returns the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL returns a redis:// URL of the server's database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Start (re)starts the server on its port and waits until it answers.
func (r *Redis) Start() {
	r.tb.Helper()
	r.cmd = exec.Command(redisBinary(r.tb), "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("start redis-server: %v", err)
	}
	cl := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer cl.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := cl.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("redis-server on %s did not answer: %v", r.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the server abruptly, as a crash would.
func (r *Redis) Kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func redisBinary(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr == nil {
			return "/usr/bin/redis-server"
		}
		tb.Fatalf("redis-server is not installed: %v", err)
	}
	return p
}

// SchedProbe measures how late the Go scheduler runs a goroutine: a loop
// of 1 ms sleeps records the worst oversleep. On a machine shared with
// other work, a wait that looks long may be starvation, not the component
// under test; tests that bound latencies add this to their bounds.
type SchedProbe struct {
	worst atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

// StartSchedProbe starts measuring.
func StartSchedProbe() *SchedProbe {
	p := &SchedProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			if late := int64(time.Since(t0) - time.Millisecond); late > p.worst.Load() {
				p.worst.Store(late)
			}
		}
	}()
	return p
}

// Stop ends the probe and returns the worst oversleep seen.
func (p *SchedProbe) Stop() time.Duration {
	close(p.stop)
	<-p.done
	return time.Duration(p.worst.Load())
}

// ProxyMode is what a FaultProxy does with connections.
type ProxyMode int

const (
	// ProxyForward relays to the target.
	ProxyForward ProxyMode = iota
	// ProxyRefuse closes every connection at once: the server stopped.
	ProxyRefuse
	// ProxyBlackhole accepts and never answers: the server hung, or the
	// network is gone.
	ProxyBlackhole
)

// FaultProxy is a TCP relay in front of a server (PostgreSQL, say) that a
// test can cut, which to a client is the same as the server failing,
// without disturbing the shared server other tests use.
type FaultProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	mode   ProxyMode
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartFaultProxy relays a free loopback port to target until the test
// ends.
func StartFaultProxy(tb testing.TB, target string) *FaultProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &FaultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		ln.Close()
		p.SetMode(ProxyRefuse)
		p.wg.Wait()
	})
	return p
}

// Addr returns the proxy's host:port, to give clients instead of target's.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// SetMode switches mode and closes every open connection.
func (p *FaultProxy) SetMode(m ProxyMode) {
	p.mu.Lock()
	p.mode = m
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		switch p.mode {
		case ProxyRefuse:
			c.Close()
		case ProxyBlackhole:
			p.conns[c] = struct{}{}
		case ProxyForward:
			p.conns[c] = struct{}{}
			p.wg.Add(1)
			go p.relay(c)
		}
		p.mu.Unlock()
	}
}

func (p *FaultProxy) relay(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.mode != ProxyForward {
		p.mu.Unlock()
		up.Close()
		p.drop(c)
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	p.drop(c)
	p.drop(up)
	<-done
}

func (p *FaultProxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// LockedBuffer is a buffer safe for a logger writing while a test reads.
type LockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
