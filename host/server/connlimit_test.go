package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnectionCapBurst opens ten times the cap at once from many
// goroutines, as a flood would: exactly the cap is held (served: their
// requests answer), every other connection gets the over_capacity 503 in
// the error table's JSON and a close, and once the held connections
// close the cap is free again (nothing leaked in the count). It runs on
// a TCP listener, whose refusals take the raw path on Linux, and on one
// that hides its descriptor, whose refusals go through Accept.
func TestConnectionCapBurst(t *testing.T) {
	t.Run("raw", func(t *testing.T) { capBurst(t, func(ln net.Listener) net.Listener { return ln }) })
	t.Run("accept", func(t *testing.T) { capBurst(t, func(ln net.Listener) net.Listener { return opaqueListener{ln} }) })
}

// opaqueListener hides its listener's SyscallConn.
type opaqueListener struct{ net.Listener }

func capBurst(t *testing.T, wrap func(net.Listener) net.Listener) {
	const limit, burst = 40, 400
	cfg := DefaultConfig()
	cfg.MaxConns = limit
	srv := New(cfg, Deps{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(wrap(ln)) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	addr := ln.Addr().String()

	type result struct {
		c      net.Conn
		status int
		code   string
		err    error
	}
	results := make(chan result, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				results <- result{err: err}
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				results <- result{c: c} // held: the server waits for a request
				return
			}
			if err != nil {
				c.Close()
				results <- result{err: err}
				return
			}
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.NewDecoder(res.Body).Decode(&body)
			// Refused connections are closed after the answer.
			_, rerr := io.ReadAll(res.Body)
			one := make([]byte, 1)
			_, eof := c.Read(one)
			c.Close()
			if rerr != nil || eof != io.EOF {
				results <- result{err: errors.Join(rerr, eof)}
				return
			}
			results <- result{status: res.StatusCode, code: body.Error.Code}
		}()
	}
	wg.Wait()
	close(results)
	var held []net.Conn
	refused := 0
	for r := range results {
		switch {
		case r.err != nil:
			t.Errorf("connection: %v", r.err)
		case r.c != nil:
			held = append(held, r.c)
		case r.status == 503 && r.code == "over_capacity":
			refused++
		default:
			t.Errorf("refusal: %d %q; want 503 over_capacity", r.status, r.code)
		}
	}
	if len(held) != limit || refused != burst-limit {
		t.Fatalf("%d held, %d refused; want %d held and %d refused", len(held), refused, limit, burst-limit)
	}
	if got := srv.RefusedConns(); got != burst-limit {
		t.Errorf("RefusedConns() = %d; want %d", got, burst-limit)
	}
	// The held connections are served.
	for _, c := range held[:3] {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("a held connection's request: %v %v", res, err)
		}
	}
	// Closing them frees the cap: a full cap's worth is held again.
	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !holdsAll(t, addr, limit) {
		if time.Now().After(deadline) {
			t.Fatal("after the held connections closed, new ones are still refused")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdsAll opens n connections at once and reports whether the server
// holds every one (none answered within 200 ms).
func holdsAll(t *testing.T, addr string, n int) bool {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		answered int
	)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if k, _ := c.Read(make([]byte, 1)); k > 0 {
				mu.Lock()
				answered++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return answered == 0
}

// TestCapListenerStops: closing the listener stops every accept loop
// (no goroutine left behind), Accept reports the close, and a connection
// accepted but not yet handed out is closed and uncounted.
func TestCapListenerStops(t *testing.T) {
	before := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newCapListener(ln, 10, 4, nil)
	// One connection accepted by a loop that waits for Accept.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; l.Open() != 1; i++ {
		if i > 200 {
			t.Fatalf("open = %d; want the pending connection counted", l.Open())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v; want net.ErrClosed", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the pending connection: %v; want closed", err)
	}
	for i := 0; runtime.NumGoroutine() > before || l.Open() != 0; i++ {
		if i > 200 {
			t.Fatalf("goroutines %d (before %d), open %d after Close", runtime.NumGoroutine(), before, l.Open())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCapConnCountsOnce: a connection closed twice leaves the count once.
func TestCapConnCountsOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newCapListener(ln, 1, 2, nil)
	defer l.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = sc.Close()
	_ = sc.Close()
	if n := l.Open(); n != 0 {
		t.Fatalf("open = %d after a double close; want 0", n)
	}
}

// TestCapListenerRefusesRaw: at a full cap the connections waiting in
// the accept queue are refused on the raw descriptor (on Linux) with the
// same answer and close, and the connection that finds room again comes
// through Accept. The connections are queued before the listener's loops
// start, so that the loops find them waiting at a full cap.
func TestCapListenerRefusesRaw(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the raw refusal path is Linux's")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	const n = 50
	var conns []net.Conn
	for range n + 1 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	var refused atomic.Int64
	l := newCapListener(ln, 1, 2, &refused)
	defer l.Close()
	held, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		got, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && len(got) == 0 {
			continue // the one held
		}
		if err != nil || string(got) != string(refusalResponse) {
			t.Fatalf("a connection over the cap: %q, %v; want the over_capacity answer and a close", got, err)
		}
		answered++
	}
	// Whichever loop starts first may take one or two through Accept;
	// the rest are refused on the raw path.
	if answered != n || refused.Load() != n || l.rawRefused.Load() < n/2 {
		t.Fatalf("%d answered, %d refused, %d of them raw; want %d, most of them raw", answered, refused.Load(), l.rawRefused.Load(), n)
	}
	// Room again: the next connection is handed out, not refused.
	held.Close()
	next, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		got <- c
	}()
	select {
	case c := <-got:
		if c == nil {
			t.Fatal("Accept failed after the cap had room")
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the connection after the cap had room was not handed out")
	}
	if refused.Load() != n {
		t.Errorf("%d refused after room came back; want %d", refused.Load(), n)
	}
}

// TestCapListenerClosesUnderFlood: closing the listener while a flood
// keeps its accept queue full at a full cap stops the raw refusal loop
// (which holds the descriptor while it runs) and every accept loop.
func TestCapListenerClosesUnderFlood(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	before := runtime.NumGoroutine()
	l := newCapListener(ln, 1, 2, nil)
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
					c.Close()
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		l.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return under the flood")
	}
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close; %d before the listener", n, before)
	}
}
