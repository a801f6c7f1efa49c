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
	"testing"
	"time"
)

// TestConnectionCapBurst opens ten times the cap at once from many
// goroutines, as a flood would: exactly the cap is held (served: their
// requests answer), every other connection gets the over_capacity 503 in
// the error table's JSON and a close, and once the held connections
// close the cap is free again (nothing leaked in the count).
func TestConnectionCapBurst(t *testing.T) {
	const limit, burst = 40, 400
	cfg := DefaultConfig()
	cfg.MaxConns = limit
	srv := New(cfg, Deps{})
	addr := serveRaw(t, srv)

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
