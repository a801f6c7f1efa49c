package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/auth"
)

// serveRaw serves srv on a loopback port for raw-socket tests.
func serveRaw(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	return ln.Addr().String()
}

// rawExchange writes head, then up to bodyLen bytes of body (chunked
// when asked) while it reads the answers, until the server closes or
// answers have come. It
// returns the answers' statuses and how many body bytes were written.
func rawExchange(t *testing.T, addr, head string, bodyLen int, chunked bool, answers int) (statuses []int, written int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		buf := make([]byte, 8<<10)
		for n < bodyLen {
			var err error
			if chunked {
				_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(buf), buf)
			} else {
				_, err = c.Write(buf[:min(len(buf), bodyLen-n)])
			}
			if err != nil {
				return
			}
			n += len(buf)
		}
		if chunked {
			_, _ = io.WriteString(c, "0\r\n\r\n")
		}
	}()
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		if resp.Close || len(statuses) == answers {
			break
		}
	}
	c.Close()
	return statuses, <-done
}

func TestBodyLimitsPerRoute(t *testing.T) {
	f := newAPIFixture(t)
	cfg := DefaultConfig()
	cfg.BodyLimit, cfg.ChatBodyLimit = 16<<10, 256<<10
	srv := New(cfg, Deps{Store: f.st, Auth: f.auth})
	addr := serveRaw(t, srv)
	tok := f.token(t, f.alice.ID)
	const big = 8 << 20
	post := func(path, auth, framing string) string {
		h := "POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + framing
		if auth != "" {
			h += "Authorization: Bearer " + auth + "\r\n"
		}
		return h + "\r\n"
	}
	cl := func(n int) string { return "Content-Length: " + strconv.Itoa(n) + "\r\n" }
	const chunked = "Transfer-Encoding: chunked\r\n"
	for _, tt := range []struct {
		name      string
		head      string
		body      int
		chunked   bool
		want      []int
		wantFirst bool
	}{
		{"content-length over the limit", post("/healthz", "", cl(big)), big, false, []int{413}, true},
		{"chunked over the limit", post("/healthz", "", chunked), big, true, []int{413}, true},
		{"short content-length", post("/healthz", "", cl(10)), big, false, []int{405, 431}, false},
		{"api route, content-length", post("/api/challenges/1/complete", tok, cl(big)), big, false, []int{413}, true},
		{"api route under the limit", post("/api/challenges/1/complete", tok, cl(8<<10)), 8 << 10, false, []int{201}, false},
		{"chat route without a token", post("/v1/chat/completions", "", cl(64<<10)), 64 << 10, false, []int{413}, false},
		{"chat route with a forged token", post("/v1/chat/completions", tok+"x", cl(64<<10)), 64 << 10, false, []int{413}, false},
		// No chat service: 404 once the body is read, not 413.
		{"chat route with a token", post("/v1/chat/completions", tok, cl(64<<10)), 64 << 10, false, []int{404}, false},
		{"chat message with a token", post("/api/chat/sessions/abc/messages", tok, cl(64<<10)), 64 << 10, false, []int{404}, false},
		{"chat route with a token, over its limit", post("/v1/chat/completions", tok, chunked), big, true, []int{413}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, written := rawExchange(t, addr, tt.head, tt.body, tt.chunked, len(tt.want))
			if len(st) == 0 || st[0] != tt.want[0] || len(st) > len(tt.want) || (len(st) == 2 && st[1] != tt.want[1]) {
				t.Fatalf("answers %v, want %v", st, tt.want)
			}
			if tt.wantFirst && written >= tt.body {
				t.Fatalf("the whole %d-byte body was written before the refusal", tt.body)
			}
		})
	}
}

func TestRequestConfigRoutes(t *testing.T) {
	f := newAPIFixture(t)
	cfg := DefaultConfig()
	srv := New(cfg, Deps{Store: f.st, Auth: f.auth, AdminToken: "admin-token-0123456789"})
	tok := f.token(t, f.alice.ID)
	for _, tt := range []struct {
		method, uri, auth string
		body              int
		write             time.Duration
	}{
		{"GET", "/dashboard/events", "", 0, cfg.StreamTimeout},
		{"GET", "/DASHBOARD/events/", "", 0, cfg.StreamTimeout},
		{"GET", "/healthz", "", 0, 0},
		{"POST", "/healthz", tok, 0, 0},
		{"POST", "/v1/chat/completions", tok, cfg.ChatBodyLimit, cfg.StreamTimeout},
		{"POST", "/v1/chat/completions?x=1", "", 0, cfg.StreamTimeout},
		{"POST", "/api/chat/sessions/s1/messages", tok, cfg.ChatBodyLimit, cfg.StreamTimeout},
		{"POST", "/api/chat/sessions//messages", tok, 0, 0},
		{"POST", "/api/chat/sessions/s1/messages/x", tok, 0, 0},
		{"POST", "/api/chat/sessions", tok, 0, 0},
		// No rollout manager: no upload limit, whatever the token.
		{"POST", "/admin/policies", "admin-token-0123456789", 0, 0},
		// The Messages API: a bearer token or an x-api-key (key:...).
		{"POST", "/v1/messages", tok, cfg.ChatBodyLimit, cfg.StreamTimeout},
		{"POST", "/v1/messages", "key:" + tok, cfg.ChatBodyLimit, cfg.StreamTimeout},
		{"POST", "/v1/messages", "key:not-a-token", 0, cfg.StreamTimeout},
		{"POST", "/v1/messages", "", 0, cfg.StreamTimeout},
	} {
		var h fasthttp.RequestHeader
		h.SetMethod(tt.method)
		h.SetRequestURI(tt.uri)
		if key, ok := strings.CutPrefix(tt.auth, "key:"); ok {
			h.Set("X-Api-Key", key)
		} else if tt.auth != "" {
			h.Set("Authorization", "Bearer "+tt.auth)
		}
		rc := srv.requestConfig(&h)
		if rc.MaxRequestBodySize != tt.body || rc.WriteTimeout != tt.write {
			t.Errorf("%s %s: body limit %d, write timeout %v; want %d, %v", tt.method, tt.uri, rc.MaxRequestBodySize, rc.WriteTimeout, tt.body, tt.write)
		}
	}
}

// idleConns opens n connections to addr and returns them with, for each,
// the status the server answered at once ("" if none within wait).
func idleConns(t *testing.T, addr string, n int, wait time.Duration) ([]net.Conn, []string, []time.Duration) {
	t.Helper()
	var (
		conns []net.Conn
		st    []string
		took  []time.Duration
	)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		up := time.Now()
		_ = c.SetReadDeadline(up.Add(wait))
		buf := make([]byte, 12)
		k, _ := io.ReadFull(c, buf)
		status := ""
		if k == 12 {
			status = string(buf[9:12])
			_, _ = io.Copy(io.Discard, c) // then the close
		}
		conns, st, took = append(conns, c), append(st, status), append(took, time.Since(up))
	}
	return conns, st, took
}

func TestConnectionCaps(t *testing.T) {
	for _, tt := range []struct {
		name   string
		set    func(*Config)
		status string
	}{
		{"server cap", func(c *Config) { c.MaxConns = 3 }, "503"},
		{"per-address cap", func(c *Config) { c.MaxConnsPerIP = 3 }, "429"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.set(&cfg)
			addr := serveRaw(t, New(cfg, Deps{}))
			_, st, took := idleConns(t, addr, 6, 300*time.Millisecond)
			for i, s := range st {
				switch {
				case i < 3 && s != "":
					t.Errorf("connection %d of the cap of 3 answered %s at once", i+1, s)
				case i >= 3 && s != tt.status:
					t.Errorf("connection %d over the cap: %q, want %s", i+1, s, tt.status)
				case i >= 3 && took[i] > 100*time.Millisecond:
					t.Errorf("connection %d over the cap closed after %v; want ≤ 100 ms", i+1, took[i])
				}
			}
		})
	}
}

func TestIdleConnectionTimeouts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadTimeout, cfg.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	addr := serveRaw(t, New(cfg, Deps{}))
	// A connection that never sends a request, and one that stops after
	// its first, are both closed after their timeout.
	silent, _, took := idleConns(t, addr, 1, 3*time.Second)
	if took[0] < 250*time.Millisecond || took[0] > 2*time.Second {
		t.Errorf("a silent connection was closed after %v; want about 300 ms", took[0])
	}
	silent[0].Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	t0 := time.Now()
	_ = c.SetReadDeadline(t0.Add(3 * time.Second))
	_, err = br.ReadByte()
	if d := time.Since(t0); err == nil || d > 2*time.Second {
		t.Errorf("an idle keep-alive connection: %v after %v; want closed after about 300 ms", err, d)
	}
	// A request whose body trickles is cut at the read timeout.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = io.WriteString(c2, "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab")
	t0 = time.Now()
	_ = c2.SetReadDeadline(t0.Add(3 * time.Second))
	b, _ := io.ReadAll(c2)
	if d := time.Since(t0); d > 2*time.Second || !strings.HasPrefix(string(b), "HTTP/1.1 408") {
		t.Errorf("a trickling body: %q after %v; want 408 after about 300 ms", b, d)
	}
}

func FuzzRequestConfig(f *testing.F) {
	a, err := auth.New(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	srv := New(DefaultConfig(), Deps{Auth: a, AdminToken: "admin-token-0123456789"})
	tok, _ := a.Issue(1, time.Hour)
	f.Add("POST", "/v1/chat/completions", "Bearer "+tok)
	for _, s := range []string{"/healthz", "/v1/chat/completions", "/api/chat/sessions/x/messages", "/admin/policies?x", "//", "/api/chat/sessions/%2F/messages", ""} {
		f.Add("POST", s, "Bearer admin-token-0123456789")
	}
	f.Add("POST", "/v1/messages", tok)
	f.Fuzz(func(t *testing.T, method, uri, auth string) {
		var h fasthttp.RequestHeader
		h.SetMethod(method)
		h.SetRequestURI(uri)
		if key, ok := strings.CutPrefix(auth, "Bearer "); ok && strings.HasPrefix(uri, "/v1/m") {
			h.Set("X-Api-Key", key) // the Messages API's header
		} else {
			h.Set("Authorization", auth)
		}
		rc := srv.requestConfig(&h)
		switch rc.MaxRequestBodySize {
		case 0, srv.cfg.ChatBodyLimit:
		default:
			t.Fatalf("%s %q: body limit %d", method, uri, rc.MaxRequestBodySize)
		}
		if rc.MaxRequestBodySize != 0 && !srv.apiBearer(h.Peek("Authorization")) && !srv.apiKey(h.Peek("X-Api-Key")) {
			t.Fatalf("%s %q: chat limit without a valid token", method, uri)
		}
	})
}
