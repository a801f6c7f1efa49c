package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/policy"
)

// loadStats is what one load run measured.
type loadStats struct {
	Requests int
	Elapsed  time.Duration
	Status   map[int]int
	Lat      []time.Duration // sorted
	XCache   map[string]int
	// Slow lists the requests that took over 50 ms, with their start.
	Slow []slowReq
}

type slowReq struct {
	At  time.Time
	Lat time.Duration
}

func (s loadStats) RPS() float64 { return float64(s.Requests) / s.Elapsed.Seconds() }

func (s loadStats) Pct(p float64) time.Duration {
	if len(s.Lat) == 0 {
		return 0
	}
	i := int(float64(len(s.Lat)-1) * p)
	return s.Lat[i]
}

// runLoad drives addr over conns keep-alive HTTP/1.1 connections until
// total requests are answered or reqFor returns nil; request i is
// reqFor(i). It is a minimal
// client (raw TCP, Content-Length bodies) so that the load generator costs
// as little as possible next to the server on the same machine.
func runLoad(addr string, conns, total int, reqFor func(i int) []byte) (loadStats, error) {
	var next atomic.Int64
	var mu sync.Mutex
	st := loadStats{Status: map[int]int{}, XCache: map[string]int{}}
	errc := make(chan error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 16<<10)
			lat := make([]time.Duration, 0, total/conns+1)
			status := map[int]int{}
			xc := map[string]int{}
			var slow []slowReq
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					break
				}
				req := reqFor(i)
				if req == nil {
					break
				}
				t0 := time.Now()
				if _, err := c.Write(req); err != nil {
					errc <- err
					return
				}
				code, x, err := readResponse(br)
				if err != nil {
					errc <- err
					return
				}
				d := time.Since(t0)
				lat = append(lat, d)
				if d > 50*time.Millisecond {
					slow = append(slow, slowReq{t0, d})
				}
				status[code]++
				xc[x]++
			}
			mu.Lock()
			st.Lat = append(st.Lat, lat...)
			st.Slow = append(st.Slow, slow...)
			for k, v := range status {
				st.Status[k] += v
			}
			for k, v := range xc {
				st.XCache[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	st.Elapsed = time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return st, err
	}
	st.Requests = len(st.Lat)
	sortDurations(st.Lat)
	return st, nil
}

var errBadResponse = errors.New("load: malformed response")

// readResponse reads one response, returning its status and X-Cache.
func readResponse(br *bufio.Reader) (int, string, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	if len(line) < 12 {
		return 0, "", errBadResponse
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, "", errBadResponse
	}
	n := -1
	xc := ""
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, _ = strconv.Atoi(string(v))
		case bytes.EqualFold(k, []byte("X-Cache")):
			xc = string(v)
		}
	}
	if n < 0 {
		return 0, "", errBadResponse
	}
	if _, err := br.Discard(n); err != nil {
		return 0, "", err
	}
	return code, xc, nil
}

// wingmanBody is a deterministic response body of about 1 KB.
func wingmanBody(kind string, viewer, subject string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"kind":%q,"viewer":%q,"subject":%q,"items":[`, kind, viewer, subject)
	for i := 0; b.Len() < 980; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"title":"approach someone new %d"}`, i, i)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// wingmanApp is a server with the Wingman read and write routes the default
// cache policy has rules for, backed by counters instead of a store.
type wingmanApp struct {
	s      *Server
	c      *cache.Cache
	origin atomic.Int64
	gen    sync.Map // subject -> generation, bumped by writes
}

func (w *wingmanApp) generation(subject string) int64 {
	v, _ := w.gen.Load(subject)
	n, _ := v.(int64)
	return n
}

func newWingmanApp(tb testing.TB, cfg cache.Config, dec policy.Decider) *wingmanApp {
	tb.Helper()
	c, err := cache.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	w := &wingmanApp{c: c}
	s := New(DefaultConfig(), Deps{Auth: fakeTokens{}, Cache: c, CachePolicy: dec})
	catalogue := wingmanBody("challenges", "", "")
	// As in the real API (apiRoutes): the catalogue is public, the rest
	// per caller. Unlike the real API, location and matches are readable
	// by anyone signed in (caller-dependent, not owner-only), so that
	// users reading each other's data put the caller-in-key rule to work;
	// the owner check is tested on the real routes (scope_test.go).
	route := func(method, path string, h fiber.Handler) {
		r, ok := lookupAPIRoute(method, path)
		if !ok {
			tb.Fatalf("%s %s not in apiRoutes", method, path)
		}
		if r.Access == Owner {
			r.Access = Caller
		}
		s.handleRoute(r, h)
	}
	route("GET", "/api/challenges", func(c *fiber.Ctx) error {
		w.origin.Add(1)
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(catalogue)
	})
	perUser := func(kind string) fiber.Handler {
		return func(c *fiber.Ctx) error {
			w.origin.Add(1)
			me, _ := userID(c)
			sub := c.Params("id")
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
			return c.Send(wingmanBody(kind+"@"+strconv.FormatInt(w.generation(sub), 10), strconv.FormatInt(me, 10), sub))
		}
	}
	route("GET", "/api/users/:id/reputation", perUser("reputation"))
	route("GET", "/api/users/:id/matches", perUser("matches"))
	route("GET", "/api/users/:id/location", perUser("location"))
	route("PUT", "/api/users/:id/location", func(c *fiber.Ctx) error {
		sub := strings.Clone(c.Params("id")) // a view of the request's buffer: kept in the map

		v, _ := w.gen.LoadOrStore(sub, int64(0))
		w.gen.Store(sub, v.(int64)+1)
		return c.JSON(fiber.Map{"ok": true})
	})
	s.handler = s.app.Handler()
	w.s = s
	return w
}

func (w *wingmanApp) serve(tb testing.TB) string {
	tb.Helper()
	return serveApp(tb, w.s)
}

// bareApp serves the same bytes from memory with nothing in front, from a
// Fiber app with the server's own settings (timeouts, error handler) and
// no cache.
func bareApp(tb testing.TB, body []byte) string {
	tb.Helper()
	return serveApp(tb, bareServer(body))
}

// bareServer is bareApp's server, not yet serving.
func bareServer(body []byte) *Server {
	s := New(DefaultConfig(), Deps{})
	s.app.Get("/api/challenges", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(body)
	})
	return s
}

// serveApp serves s on a free local port until the test ends.
func serveApp(tb testing.TB, s *Server) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return ln.Addr().String()
}

func getReq(path string, user int) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: wingate\r\nAuthorization: Bearer u" + strconv.Itoa(user) + "\r\n\r\n")
}

// discard keeps io imported for helpers used by several test files.
var _ = io.Discard

func sortDurations(d []time.Duration) { slices.Sort(d) }
