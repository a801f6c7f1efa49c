package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wingman-app/wingate/host/apierr"
)

// The connection cap. fasthttp enforces Server.Concurrency in its one
// accept loop, with a plain-text refusal. capListener enforces
// Config.MaxConns itself, before fasthttp sees a connection, in several
// accept loops (one per CPU, at least two): each loop accepts, counts the
// connection against the cap and, when it is over, answers it with the
// error table's over_capacity 503 and closes it on the spot, never
// waiting for fasthttp's loop. While the cap is full, a loop empties the
// accept queue on the raw descriptor (refuseRaw: accept4, write, close)
// instead of building a net.Conn for each connection it will close.
// A connection arriving at a full server is refused within a
// millisecond; in a burst, the refusals also wait behind the connections
// queued before them in the kernel's accept queue, whose length the
// listen backlog bounds (app.Config.ListenBacklog). fasthttp's own cap is
// set above this one (concurrencySlack) so that it never refuses first.

// concurrencySlack is how far above Config.MaxConns fasthttp's
// Concurrency is set: a connection leaves capListener's count when it is
// closed, a moment before its worker returns to fasthttp's pool.
const concurrencySlack = 1024

// acceptLoops is how many goroutines accept on one listener.
func acceptLoops() int { return max(2, runtime.GOMAXPROCS(0)) }

// refusalResponse is the whole answer to a connection over the cap: a
// 503 with the error table's body for over_capacity, and a close.
var refusalResponse = func() []byte {
	e := apierr.New(apierr.OverCapacity)
	body, _ := json.Marshal(e.JSONBody())
	return fmt.Appendf(nil, "HTTP/1.1 %d Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
		e.Status, len(body), body)
}()

// capListener accepts on its listener in acceptLoops goroutines, refuses
// the connections over its cap and hands the rest to Accept. While the
// cap is full, refusals take the raw path (refuseRaw, on Linux). Each
// connection handed out counts against the cap until its first Close.
type capListener struct {
	net.Listener
	cap     int64
	open    atomic.Int64
	refused *atomic.Int64
	// rawRefused counts the refusals made by refuseRaw.
	rawRefused atomic.Int64
	raw        syscall.RawConn // the listener's descriptor, for refuseRaw; nil when it has none
	conns      chan net.Conn
	done       chan struct{}
	stop       sync.Once
	err        error // the error that stopped the loops; read after done
	errOnce    sync.Once
}

// newCapListener starts loops accept loops on ln with a cap of limit
// connections open at once (limit ≤ 0: no cap). refused counts the
// connections refused.
func newCapListener(ln net.Listener, limit, loops int, refused *atomic.Int64) *capListener {
	l := &capListener{Listener: ln, cap: int64(limit), raw: rawListener(ln), refused: refused, conns: make(chan net.Conn), done: make(chan struct{})}
	if l.cap <= 0 {
		l.cap = 1 << 62
	}
	for range max(loops, 1) {
		go l.loop()
	}
	return l
}

// loop accepts until the listener fails or closes.
func (l *capListener) loop() {
	for {
		// At the cap, refuse what is queued on the raw descriptor, then
		// wait in Accept for the next connection.
		if l.open.Load() >= l.cap {
			l.refuseRaw()
		}
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.halt(err)
			return
		}
		if l.open.Add(1) > l.cap {
			l.open.Add(-1)
			l.refuse(c)
			continue
		}
		select {
		case l.conns <- &capConn{Conn: c, l: l}:
		case <-l.done:
			l.open.Add(-1)
			_ = c.Close()
			return
		}
	}
}

// refuse answers c with the over-capacity response and closes it. The
// response fits any fresh socket's send buffer, so the write does not
// wait for the client.
func (l *capListener) refuse(c net.Conn) {
	_, _ = c.Write(refusalResponse)
	_ = c.Close()
	if l.refused != nil {
		l.refused.Add(1)
	}
}

// halt stops every loop; Accept then returns err.
func (l *capListener) halt(err error) {
	l.errOnce.Do(func() { l.err = err })
	l.stop.Do(func() { close(l.done) })
}

// stopped reports whether the loops are to stop.
func (l *capListener) stopped() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Accept returns the next connection under the cap.
func (l *capListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close closes the listener; the loops stop.
func (l *capListener) Close() error {
	err := l.Listener.Close()
	l.halt(net.ErrClosed)
	return err
}

// Open returns the connections counted against the cap.
func (l *capListener) Open() int64 { return l.open.Load() }

// capConn is a connection counted against its listener's cap until its
// first Close.
type capConn struct {
	net.Conn
	l      *capListener
	closed atomic.Bool
}

func (c *capConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// NetConn returns the connection under the count (as crypto/tls does).
func (c *capConn) NetConn() net.Conn { return c.Conn }
