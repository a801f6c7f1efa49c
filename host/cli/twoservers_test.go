package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// serverProc is one `wingate serve` process of the built binary.
type serverProc struct {
	cmd  *exec.Cmd
	addr string
	log  *testkit.SyncBuffer
}

func (p *serverProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-done
		t.Errorf("serve %s did not stop on SIGTERM within 30 s", p.addr)
	}
}

// TestTwoDevelopmentServers: two servers on one machine with every
// development default, differing only in --addr. Tokens from `wingate
// token --addr` work against the server named, get 401 token_wrong_key
// from the other, and none stops working when the other server starts
// or when its own restarts. Neither log shows a secret.
func TestTwoDevelopmentServers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the wingate binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "wingate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/wingate")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cache := t.TempDir()
	env := []string{"XDG_CACHE_HOME=" + cache}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "WINGATE_") && k != "DATABASE_URL" && k != "REDIS_URL" && k != "XDG_CACHE_HOME" {
			env = append(env, kv)
		}
	}
	start := func(addr string) *serverProc {
		p := &serverProc{addr: addr, log: &testkit.SyncBuffer{}}
		p.cmd = exec.Command(bin, "serve", "--addr", addr)
		p.cmd.Dir, p.cmd.Env = repoRoot, env
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitListening(t, "http://"+addr, 3*time.Minute) // a loaded machine starts slowly
		return p
	}
	token := func(addr string, user string) string {
		cmd := exec.Command(bin, "token", "--addr", addr, "--user", user)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("wingate token --addr %s: %v", addr, err)
		}
		return strings.TrimSpace(string(out))
	}
	// expect checks what server at addr answers for user's token.
	expect := func(addr, user, tok string, status int, code string) {
		t.Helper()
		st, m := call(t, "GET", "http://"+addr+"/api/users/"+user+"/reputation", tok, "")
		if st != status || apiCode(m) != code {
			t.Fatalf("%s with a token: %d %v, want %d %q", addr, st, m, status, code)
		}
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := start(addrA)
	tokA := token(addrA, "3")
	expect(addrA, "3", tokA, 200, "")
	b := start(addrB)
	t.Cleanup(func() { b.stop(t) })
	tokB := token(addrB, "4")
	// Each server takes its own tokens, those minted before the other
	// started included, and refuses the other's saying why.
	expect(addrA, "3", tokA, 200, "")
	expect(addrB, "4", tokB, 200, "")
	expect(addrB, "3", tokA, 401, "token_wrong_key")
	expect(addrA, "4", tokB, 401, "token_wrong_key")
	expect(addrA, "3", token(addrA, "3"), 200, "")
	// A restart keeps the address's secret: old tokens still work.
	a.stop(t)
	a = start(addrA)
	t.Cleanup(func() { a.stop(t) })
	expect(addrA, "3", tokA, 200, "")
	expect(addrB, "4", tokB, 200, "")
	expect(addrA, "3", token(addrA, "3"), 200, "")
	// The admin API of each answers the development token of each
	// (policy ls --addr), and neither log shows a secret.
	for _, p := range []*serverProc{a, b} {
		cmd := exec.Command(bin, "policy", "ls", "--addr", p.addr)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "active") {
			t.Fatalf("policy ls --addr %s: %v\n%s", p.addr, err, out)
		}
	}
	files, _ := filepath.Glob(filepath.Join(cache, "wingate", "dev", "*", "*"))
	if len(files) != 4 {
		t.Fatalf("development files %v, want a secret and an admin token per address", files)
	}
	for _, f := range files {
		v, _ := os.ReadFile(f)
		for _, p := range []*serverProc{a, b} {
			if s := strings.TrimSpace(string(v)); s == "" || strings.Contains(p.log.String(), s) {
				t.Fatalf("serve %s's log shows the content of %s (or it is empty)", p.addr, f)
			}
		}
	}
}

func apiCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// waitListening waits until a process started at base answers /readyz
// 200, tolerating refused connections while it starts.
func waitListening(t *testing.T, base string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := httpClient.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not 200 after %v (last error %v)", base, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
