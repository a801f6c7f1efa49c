package app

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// varnishVCL is the configuration an operator puts in front of Wingate:
// every read is looked up, Authorization or not, and only the answer's
// Cache-Control decides what is kept (Varnish's own max-age and Age
// arithmetic gives the TTL); private, no-store, no-cache or no
// Cache-Control at all is never kept.
const varnishVCL = `vcl 4.1;

backend wingate {
    .host = "127.0.0.1";
    .port = "%d";
}

sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    return (hash);
}

sub vcl_backend_response {
    if (!beresp.http.Cache-Control || beresp.http.Cache-Control ~ "(?i)(private|no-store|no-cache)") {
        set beresp.ttl = 120s;
        set beresp.uncacheable = true;
    }
    return (deliver);
}
`

// varnishd finds Debian's varnishd. Without it the test fails in CI and
// is skipped, saying so, elsewhere.
func varnishd(t *testing.T) string {
	for _, p := range []string{"varnishd", "/usr/sbin/varnishd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("varnishd is not installed (.ci/run installs Debian's varnish)")
	}
	t.Skip("varnishd is not installed: install Debian's varnish to run the Varnish test")
	return ""
}

// countingProxy relays to target and counts the requests it relays per
// path and query: what the backend saw.
type countingProxy struct {
	mu   sync.Mutex
	seen map[string]int
}

func (p *countingProxy) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[path]
}

func startCountingProxy(t *testing.T, target string) (*countingProxy, int) {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &countingProxy{seen: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen[r.URL.RequestURI()]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p, ln.Addr().(*net.TCPAddr).Port
}

// startVarnish runs varnishd in the foreground as the test's own process
// on a free port, its work directory a temporary one, with varnishVCL
// pointed at backendPort.
func startVarnish(t *testing.T, backendPort int) string {
	bin := varnishd(t)
	dir := t.TempDir()
	vcl := filepath.Join(dir, "wingate.vcl")
	if err := os.WriteFile(vcl, []byte(fmt.Sprintf(varnishVCL, backendPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "-F", "-n", filepath.Join(dir, "work"), "-j", "none", "-T", "none",
		"-a", "127.0.0.1:"+strconv.Itoa(port), "-f", vcl, "-s", "malloc,32m")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond); err == nil {
			c.Close()
			return base
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("varnishd did not listen within 30 s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestVarnishHonoursCacheControl puts Varnish in front of the assembly
// the way an operator would. The public catalogue is served by Varnish
// from the second request on (X-Varnish names two transactions, Age
// grows, the backend saw one request); a caller's own answers, private
// (reputation) or no-store (chat sessions), are never kept: every
// request reaches the backend and each user gets their own body.
func TestVarnishHonoursCacheControl(t *testing.T) {
	_, base := listening(t, nil, nil)
	proxy, proxyPort := startCountingProxy(t, base)
	vbase := startVarnish(t, proxyPort)

	const catalogue = "/api/challenges?limit=8"
	first := call(t, "GET", vbase+catalogue, "")
	if first.status != 200 || len(strings.Fields(first.h.Get("X-Varnish"))) != 1 {
		t.Fatalf("first catalogue request through Varnish: %d X-Varnish %q, want 200 and one transaction id", first.status, first.h.Get("X-Varnish"))
	}
	time.Sleep(1100 * time.Millisecond)
	second := call(t, "GET", vbase+catalogue, "")
	age, _ := strconv.Atoi(second.h.Get("Age"))
	if second.status != 200 || len(strings.Fields(second.h.Get("X-Varnish"))) != 2 || age < 1 || second.body != first.body {
		t.Fatalf("second catalogue request: %d X-Varnish %q Age %q, want a Varnish hit (two ids, Age ≥ 1, same body)",
			second.status, second.h.Get("X-Varnish"), second.h.Get("Age"))
	}
	if n := proxy.count(catalogue); n != 1 {
		t.Fatalf("the backend saw the catalogue %d times, want 1", n)
	}
	// Varnish answers a conditional request from its copy with Wingate's ETag.
	if nm := call(t, "GET", vbase+catalogue, "", "If-None-Match", first.h.Get("ETag")); nm.status != 304 || nm.body != "" {
		t.Fatalf("If-None-Match through Varnish: %d %q, want 304 without a body", nm.status, nm.body)
	}

	// Per-user answers: user 1 has a chat session, user 2 none.
	tok := map[int64]string{1: bearer(t, 1), 2: bearer(t, 2)}
	if cr := call(t, "POST", base+"/api/chat/sessions", `{"title": "varnish"}`, "Authorization", tok[1], "Content-Type", "application/json"); cr.status != 201 {
		t.Fatalf("create session: %d %s", cr.status, cr.body)
	}
	for _, path := range []string{"/api/chat/sessions", "/api/users/1/reputation"} {
		before := proxy.count(path)
		for i, user := range []int64{1, 2, 1, 2} {
			direct := call(t, "GET", base+path, "", "Authorization", tok[user])
			via := call(t, "GET", vbase+path, "", "Authorization", tok[user])
			if via.status != 200 || via.body != direct.body {
				t.Fatalf("%s as user %d through Varnish: %d %q, want their own answer %q", path, user, via.status, via.body, direct.body)
			}
			if ids := strings.Fields(via.h.Get("X-Varnish")); len(ids) != 1 {
				t.Fatalf("%s as user %d: X-Varnish %q: Varnish served a per-user answer from its cache", path, user, via.h.Get("X-Varnish"))
			}
			if n := proxy.count(path) - before; n != i+1 {
				t.Fatalf("%s: the backend saw %d of %d requests", path, n, i+1)
			}
		}
	}
	sessions1 := call(t, "GET", vbase+"/api/chat/sessions", "", "Authorization", tok[1])
	sessions2 := call(t, "GET", vbase+"/api/chat/sessions", "", "Authorization", tok[2])
	if !strings.Contains(sessions1.body, `"varnish"`) || strings.Contains(sessions2.body, `"varnish"`) {
		t.Fatalf("user 1 sees %s, user 2 sees %s: want user 1's session for user 1 only", sessions1.body, sessions2.body)
	}
}
