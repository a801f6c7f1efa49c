package app

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its accepts with errs, in order, then accepts
// from the real listener.
type failingListener struct {
	net.Listener
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

func TestBackoffListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	enfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)}
	fails := []error{emfile, emfile, enfile}
	for range 7 {
		fails = append(fails, emfile)
	}
	var (
		logs   bytes.Buffer
		count  atomic.Int64
		sleeps []time.Duration
	)
	bl := &backoffListener{Listener: &failingListener{ln, fails}, log: slog.New(slog.NewTextHandler(&logs, nil)),
		errs: &count, episode: new(atomic.Bool), sleep: func(d time.Duration) { sleeps = append(sleeps, d) }}
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := bl.Accept()
	if err != nil {
		t.Fatalf("Accept returned %v; want the connection after the failures", err)
	}
	c.Close()
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 500, 500, 500}
	if fmt.Sprint(sleeps) != fmt.Sprint(scale(want, time.Millisecond)) {
		t.Errorf("pauses %v, want %v", sleeps, scale(want, time.Millisecond))
	}
	if count.Load() != 10 {
		t.Errorf("counted %d failures, want 10", count.Load())
	}
	if n := strings.Count(logs.String(), "out of descriptors"); n != 1 {
		t.Errorf("%d log lines for one episode, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "accepting connections again") || !strings.Contains(logs.String(), "failed_accepts=10") {
		t.Errorf("the end of the episode is not logged with its count:\n%s", logs.String())
	}
	// Any other error is the caller's, at once.
	other := errors.New("closed")
	bl.Listener = &failingListener{ln, []error{other}}
	if _, err := bl.Accept(); err != other {
		t.Errorf("Accept = %v, want the listener's own error", err)
	}
	if count.Load() != 10 {
		t.Error("an error that is not for lack of resources was counted")
	}
}

func scale(ds []time.Duration, unit time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d * unit
	}
	return out
}

func TestConnCap(t *testing.T) {
	for _, tt := range []struct {
		limit uint64
		want  int
	}{
		{0, 16}, {256, 16}, {272, 16}, {300, 44}, {1024, 768}, {2048, 1792}, {20000, 17500}, {1 << 20, 917504}, {1 << 40, 1 << 20},
	} {
		if got := ConnCap(tt.limit); got != tt.want {
			t.Errorf("ConnCap(%d) = %d, want %d", tt.limit, got, tt.want)
		}
		if tt.limit > 300 && uint64(ConnCap(tt.limit))+256 > tt.limit {
			t.Errorf("ConnCap(%d) leaves under 256 descriptors", tt.limit)
		}
	}
}

func TestConnLimitSettings(t *testing.T) {
	env := map[string]string{"WINGATE_MAX_CONNS": "100", "WINGATE_BODY_LIMIT": "1000", "WINGATE_STREAM_TIMEOUT": "1m"}
	cfg, err := Load("", func(k string) string { return env[k] }, map[string]string{"max_conns_per_ip": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != 100 || cfg.BodyLimit != 1000 || cfg.StreamTimeout != time.Minute || cfg.MaxConnsPerIP != 7 {
		t.Fatalf("loaded %+v", cfg)
	}
	for _, bad := range []map[string]string{
		{"WINGATE_MAX_CONNS": "-1"}, {"WINGATE_BODY_LIMIT": "0"}, {"WINGATE_BODY_LIMIT": "2000000000"},
		{"WINGATE_IDLE_TIMEOUT": "-1s"}, {"WINGATE_MAX_OPEN_FILES": "-5"},
		{"WINGATE_LISTEN_BACKLOG": "-1"}, {"WINGATE_LISTEN_BACKLOG": "2000000"},
	} {
		if _, err := Load("", func(k string) string { return bad[k] }, nil); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: err %v, want a usage error", bad, err)
		}
	}
}

// TestListenBacklog: the accept queue is what setBacklog asks for. A
// listener that never accepts, with a backlog of 4, takes about the
// queue's worth of connections (Linux completes backlog+1 handshakes,
// and a few more whose SYNs came in together); the rest of a burst of
// 40 find the queue full and their SYNs dropped, and time out
// connecting. With the system's somaxconn every one of them completes.
func TestListenBacklog(t *testing.T) {
	completed := func(backlog int) int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		setBacklog(ln, backlog)
		var (
			wg sync.WaitGroup
			mu sync.Mutex
			n  int
		)
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
				if err != nil {
					return
				}
				defer c.Close()
				mu.Lock()
				n++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return n
	}
	if n := completed(4); n < 1 || n > 12 {
		t.Errorf("backlog 4: %d of 40 connects completed; want 1 to 12", n)
	}
	if n := completed(0); n != 40 {
		t.Errorf("the system's backlog: %d of 40 connects completed; want 40", n)
	}
}
