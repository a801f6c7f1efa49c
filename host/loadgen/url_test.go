package loadgen

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunURLRate: at a constant rate the run sends what was asked over
// the connections given, with the header, and every answer counts.
func TestRunURLRate(t *testing.T) {
	var n, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/challenges" || r.URL.RawQuery != "limit=5" || r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "wrong request", 400)
			return
		}
		n.Add(1)
		w.Write([]byte(`{"items":[]}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	rep, err := RunURL(context.Background(), URLConfig{URL: srv.URL + "/api/challenges?limit=5",
		Header: map[string]string{"Authorization": "Bearer t"}, Connections: 4, Rate: 2000, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Non2xx != 0 || rep.Errors != 0 || rep.Requests != n.Load() {
		t.Fatalf("report %+v, server counted %d", rep, n.Load())
	}
	// Generous bounds: a busy machine may fall behind, never ahead.
	if rep.Requests < 1000 || rep.Requests > 2001 {
		t.Fatalf("%d requests at 2000/s for 1 s", rep.Requests)
	}
	if c := conns.Load(); c != 4 {
		t.Fatalf("%d connections opened, want 4 kept alive", c)
	}
}

// TestRunURLStallShowsAsLatency: the server stalls 300 ms once; at a
// constant rate every request due during the stall waits for it, and the
// latency measured from the intended send time shows it (a closed loop
// would have sent nothing meanwhile and reported one slow request).
func TestRunURLStallShowsAsLatency(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 20 {
			time.Sleep(300 * time.Millisecond)
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	rep, err := RunURL(context.Background(), URLConfig{URL: srv.URL + "/", Connections: 1, Rate: 200, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	// 300 ms at 200/s: about 60 requests were due during the stall.
	if rep.P90 < 50*time.Millisecond || rep.Max < 250*time.Millisecond || rep.Late < 20 {
		t.Fatalf("p90 %v, max %v, late %d: the stall is hidden", rep.P90, rep.Max, rep.Late)
	}
}

// TestRunURLRefuses: non-loopback targets, header injection and limits.
func TestRunURLRefuses(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]URLConfig{
		"remote host":      {URL: "http://192.0.2.1/"},
		"https":            {URL: "https://127.0.0.1:1/"},
		"header injection": {URL: "http://127.0.0.1:1/", Header: map[string]string{"X": "a\r\nEvil: 1"}},
		"bad header name":  {URL: "http://127.0.0.1:1/", Header: map[string]string{"X Y": "1"}},
		"rate too high":    {URL: "http://127.0.0.1:1/", Rate: MaxRate + 1},
		"connections":      {URL: "http://127.0.0.1:1/", Connections: MaxConnections + 1},
		"duration":         {URL: "http://127.0.0.1:1/", Duration: MaxDuration + 1},
	} {
		if _, err := RunURL(ctx, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := RunURL(ctx, URLConfig{URL: "http://192.0.2.1/"}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("remote: %v, want ErrNotLoopback", err)
	}
}

func TestReadResponse(t *testing.T) {
	cases := []struct {
		in     string
		status int
		keep   bool
		err    bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokNEXT", 200, true, false},
		{"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nConnection: close\r\n\r\n", 503, false, false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, false, false},
		{"HTTP/1.1 204 No Content\r\n\r\n", 204, true, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 0, false, true},
		{"HTTP/1.1 200 OK\r\n\r\n", 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, true},
		{"HTTP/1.1 2x0 OK\r\n\r\n", 0, false, true},
		{"SSH-2.0-OpenSSH\r\n", 0, false, true},
		{"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, false, true},
	}
	for _, c := range cases {
		br := bufio.NewReader(strings.NewReader(c.in))
		st, keep, err := readResponse(br)
		if (err != nil) != c.err || st != c.status || (err == nil && keep != c.keep) {
			t.Errorf("%q: %d %v %v; want %d keep %v err %v", c.in, st, keep, err, c.status, c.keep, c.err)
		}
	}
}

// FuzzReadResponse: any bytes from a server give a status or an error,
// never a panic, and a good answer never reads past its body.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 999 X\r\nContent-Length: 99999999999999999999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append(append([]byte{}, b...), "TAIL"...)
		br := bufio.NewReader(strings.NewReader(string(in)))
		st, _, err := readResponse(br)
		if err == nil && (st < 100 || st > 999) {
			t.Fatalf("status %d without an error", st)
		}
	})
}
