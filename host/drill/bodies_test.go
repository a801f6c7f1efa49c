package drill

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bigBody is the size of each hostile body: over the admin upload limit
// (32 MiB and its multipart slack) as well as every other.
const bigBody = 33_000_000

// bodyAttack is one way of sending a big body.
type bodyAttack struct {
	name string
	// head is the request's header for the target.
	head func(method, path string) string
	// chunked frames the body in 64 KiB chunks.
	chunked bool
}

var bodyAttacks = []bodyAttack{
	{"content-length", func(m, p string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: drill\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", m, p, bigBody)
	}, false},
	{"chunked", func(m, p string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: drill\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", m, p)
	}, true},
	// The header says 100 bytes; the other 32.9 MB are, to the server,
	// the next request: garbage that must fail at once and close the
	// connection.
	{"short content-length", func(m, p string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: drill\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", m, p)
	}, false},
}

// bodyTarget is a route attacked with big bodies and the answers it may
// give to each attack (first answer; then, for the short Content-Length,
// the answer to the rest).
type bodyTarget struct {
	method, path string
	want         map[string][]int
}

var bodyTargets = []bodyTarget{
	{"POST", "/healthz", map[string][]int{
		"content-length": {413}, "chunked": {413}, "short content-length": {405, 431}}},
	{"POST", "/api/challenges/1/complete", map[string][]int{
		"content-length": {413}, "chunked": {413}, "short content-length": {401, 431}}},
	// Without the admin token an upload gets the small limit; a refusal
	// by Content-Length is answered as requireAdmin answers (401), one
	// while a chunked body is read 413.
	{"POST", "/admin/policies?kind=cache", map[string][]int{
		"content-length": {401}, "chunked": {413}, "short content-length": {401, 431}}},
}

// limitedAdmin: an admin refusal the server answers 401 becomes 429
// once one address has failed 10 times (the admin guard's limit), which
// 60 concurrent uploads without a token reach; both are answered before
// the body is read.
func limitedAdmin(path string, want int) bool {
	return strings.HasPrefix(path, "/admin/") && want == 401
}

// bodyResult is what one hostile request got.
type bodyResult struct {
	statuses []int
	sent     int64 // body bytes the client could write before the close
	took     time.Duration
	err      error
}

// zeros is the body's content, shared by every sender.
var zeros = make([]byte, 64<<10)

// sendBig sends the attack to addr, writing the body while it reads the
// answers, until the server closes the connection or the body is sent.
func sendBig(addr string, a bodyAttack, method, path string) bodyResult {
	return sendBigFrom("", addr, a, method, path)
}

// sendBigFrom is sendBig from the source address from ("" for any).
func sendBigFrom(from, addr string, a bodyAttack, method, path string) bodyResult {
	t0 := time.Now()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return bodyResult{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var sent atomic.Int64
	go func() {
		if _, err := io.WriteString(c, a.head(method, path)); err != nil {
			return
		}
		for sent.Load() < bigBody {
			n := int64(len(zeros))
			var err error
			if a.chunked {
				_, err = fmt.Fprintf(c, "%x\r\n", n)
				if err == nil {
					_, err = c.Write(zeros)
				}
				if err == nil {
					_, err = io.WriteString(c, "\r\n")
				}
			} else {
				_, err = c.Write(zeros[:min(n, bigBody-sent.Load())])
			}
			if err != nil {
				return
			}
			sent.Add(n)
		}
	}()
	var r bodyResult
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			// The server's close may reset the connection once the
			// answers are read; a reset before any answer is an error.
			if len(r.statuses) == 0 {
				r.err = err
			}
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.statuses = append(r.statuses, resp.StatusCode)
		if resp.Close {
			// Wait for the close itself.
			_, err := br.ReadByte()
			if err == nil {
				r.err = errors.New("data after a Connection: close answer")
			}
			break
		}
	}
	r.took, r.sent = time.Since(t0), sent.Load()
	return r
}

// TestDrillBigBodies: 60 concurrent 33 MB bodies to /healthz, to a JSON
// API route and to the admin upload without a token, each sent with a
// Content-Length, chunked and with a Content-Length smaller than the
// body. Each is refused without its body being read: the server's RSS
// stays within 50 MB of its value before.
func TestDrillBigBodies(t *testing.T) {
	const concurrent = 60
	rounds := 1
	if *full {
		rounds = 5
	}
	p := startProc(t, policyDir(t))
	addr, opsAddr := strings.TrimPrefix(p.base, "http://"), strings.TrimPrefix(p.ops, "http://")
	time.Sleep(time.Second) // let start-up's allocations settle
	start := p.rss(t)
	var peak atomic.Int64
	peak.Store(start)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if v := rssOf(p.cmd.Process.Pid); v > peak.Load() {
				peak.Store(v)
			}
		}
	}()
	t0 := time.Now()
	var total, totalSent int64
	for range rounds {
		for _, tg := range bodyTargets {
			for _, a := range bodyAttacks {
				res := make([]bodyResult, concurrent)
				var wg sync.WaitGroup
				for i := range res {
					wg.Add(1)
					to := addr // the admin API is on the operators' listener
					if strings.HasPrefix(tg.path, "/admin/") {
						to = opsAddr
					}
					go func() { defer wg.Done(); res[i] = sendBig(to, a, tg.method, tg.path) }()
				}
				wg.Wait()
				want := tg.want[a.name]
				var worst time.Duration
				var sent int64
				for i, r := range res {
					worst, sent = max(worst, r.took), sent+r.sent
					switch {
					case r.err != nil:
						t.Errorf("%s %s (%s) #%d: %v", tg.method, tg.path, a.name, i, r.err)
					case len(r.statuses) == 0 || (r.statuses[0] != want[0] && !(limitedAdmin(tg.path, want[0]) && r.statuses[0] == 429)):
						t.Errorf("%s %s (%s) #%d: answers %v, want %v", tg.method, tg.path, a.name, i, r.statuses, want)
					case len(r.statuses) > 1 && (len(want) < 2 || r.statuses[1] != want[1]):
						t.Errorf("%s %s (%s) #%d: answers %v, want %v", tg.method, tg.path, a.name, i, r.statuses, want)
					case r.sent >= bigBody:
						t.Errorf("%s %s (%s) #%d: the whole body was taken before the answer", tg.method, tg.path, a.name, i)
					}
				}
				total += concurrent
				totalSent += sent
				t.Logf("%-28s %-22s %d × 33 MB: answers like %v, slowest %v, %.1f MB written by the clients in all",
					tg.path, a.name, concurrent, res[0].statuses, worst.Round(time.Millisecond), float64(sent)/1e6)
			}
		}
	}
	close(stop)
	<-sampled
	end := p.rss(t)
	p.alive(t, "after the bodies")
	if st, _, _, err := do(http.MethodGet, p.base+"/healthz", "", "", nil); err != nil || st != http.StatusOK {
		t.Errorf("/healthz after the bodies: %d %v", st, err)
	}
	mb := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("%d requests of 33 MB in %v; client-side writes %.0f MB in all (socket buffers included)", total, time.Since(t0).Round(time.Millisecond), float64(totalSent)/1e6)
	t.Logf("RSS: %.1f MiB before, peak %.1f MiB (+%.1f), %.1f MiB after", mb(start), mb(peak.Load()), mb(peak.Load()-start), mb(end))
	if peak.Load()-start > 50<<20 {
		t.Errorf("RSS grew by %.1f MiB; want ≤ 50 MiB (the bodies were read)", mb(peak.Load()-start))
	}
}

// rssOf returns a process's resident set size in bytes (0 when it cannot
// be read).
func rssOf(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(raw), "VmRSS:")
	f := strings.Fields(rest)
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(f[0], 10, 64)
	return kb << 10
}
