package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// TestReadmeGoTutorialFromFreshClone follows the README's "Write your
// first policy" from a fresh clone of the repository (its committed
// state) in a temporary directory, with nothing configured: it writes the
// files the tutorial shows, applies the policies.json entry it shows, and
// runs every command of its sh blocks exactly as printed, in order —
// build, test, serve (in the background until the end), token, the swap
// through the policy directory, the push through the admin API, the
// rollback and the load run. Each output line the README shows after a
// command must be printed by it ("…" stands for anything, runs of blank
// space for any blank space). WINGATE_ADDR names a free port, as the
// tutorial tells a reader whose 8080 is taken; the development secret and
// admin token live in a temporary cache directory. The server's log must
// not hold either.
func TestReadmeGoTutorialFromFreshClone(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and builds policies; skipped with -short")
	}
	gocache := goEnv(t, "GOCACHE")
	gomodcache := goEnv(t, "GOMODCACHE")
	clone := filepath.Join(t.TempDir(), "wingate")
	if out, err := exec.Command("git", "clone", "--quiet", repoRoot, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cache := t.TempDir()
	// -trimpath: the clone's packages share the build cache whatever
	// directory it is in, so only the first run compiles them.
	env := []string{"WINGATE_ADDR=" + addr, "XDG_CACHE_HOME=" + cache, "GOCACHE=" + gocache, "GOMODCACHE=" + gomodcache,
		"GOFLAGS=-trimpath"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "WINGATE_"), k == "DATABASE_URL", k == "REDIS_URL", k == "XDG_CACHE_HOME", k == "GOCACHE", k == "GOMODCACHE", k == "GOFLAGS":
		default:
			env = append(env, kv)
		}
	}
	blocks := readmeSection(t, "## Write your first policy", "### Write your first policy in Rust")
	var serveLog testkit.SyncBuffer
	var serve *exec.Cmd
	exited := make(chan error, 1) // serve's Wait, once it has started
	t.Cleanup(func() {
		if serve != nil {
			killProcessGroup(serve)
			<-exited
		}
	})
	ran, files := 0, 0
	for _, b := range blocks {
		switch {
		case b.lang == "go" && strings.Contains(b.after, "plugins/myroute/main.go"):
			mustWrite(t, filepath.Join(clone, "plugins/myroute/main.go"), strings.Join(b.lines, "\n")+"\n")
			files++
		case b.lang == "json" && strings.Contains(b.after, "plugins/myroute/testdata/cases/basic.json"):
			mustWrite(t, filepath.Join(clone, "plugins/myroute/testdata/cases/basic.json"), strings.Join(b.lines, "\n")+"\n")
			files++
		case b.lang == "json" && strings.Contains(b.after, "plugins/myroute/config.json"):
			mustWrite(t, filepath.Join(clone, "plugins/myroute/config.json"), strings.Join(b.lines, "\n")+"\n")
			files++
		case b.lang == "json" && strings.Contains(strings.Join(b.lines, ""), `"file": "myroute.wasm"`):
			setPolicyEntry(t, filepath.Join(clone, "policies", "policies.json"), strings.Join(b.lines, "\n"))
			files++
		case b.lang == "sh":
			for i := 0; i < len(b.lines); i++ {
				line := b.lines[i]
				if !isTutorialCommand(line) {
					continue
				}
				var want []string
				for k := i + 1; k < len(b.lines) && !isTutorialCommand(b.lines[k]) && strings.TrimSpace(b.lines[k]) != ""; k++ {
					want = append(want, b.lines[k])
				}
				ran++
				if strings.HasSuffix(line, " serve") {
					serve = startServe(t, clone, env, line, &serveLog)
					go func(cmd *exec.Cmd) { exited <- cmd.Wait() }(serve)
					waitServe(t, exited, "http://"+addr, &serveLog)
					continue
				}
				runTutorialCommand(t, clone, env, line, want)
			}
		}
	}
	if files != 4 {
		t.Fatalf("README: found %d of the 4 files the tutorial writes", files)
	}
	if ran < 13 {
		t.Fatalf("ran %d commands; the Go tutorial has at least 13", ran)
	}
	// The server logged where its development secret and admin token
	// are, never what they hold.
	for _, name := range []string{devSecretFile, devAdminFile} {
		matches, _ := filepath.Glob(filepath.Join(cache, "wingate", "dev", "*", name))
		if len(matches) != 1 {
			t.Fatalf("development %s files: %v", name, matches)
		}
		b, _ := os.ReadFile(matches[0])
		if v := strings.TrimSpace(string(b)); v == "" || strings.Contains(serveLog.String(), v) {
			t.Fatalf("serve's log shows its %s (or the file is empty)", name)
		}
		if !strings.Contains(serveLog.String(), matches[0]) {
			t.Errorf("serve's log does not say where its %s is", name)
		}
	}
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// freeAddr returns a loopback address whose port and the next one (the
// operators' listener serve derives from it) are both free now, and
// overlap no pair it returned before in this process.
func freeAddr(t *testing.T) string {
	t.Helper()
	handedMu.Lock()
	defer handedMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		ln.Close()
		if err != nil {
			continue
		}
		next.Close()
		if handed[port] || handed[port+1] {
			continue
		}
		handed[port], handed[port+1] = true, true
		return fmt.Sprintf("127.0.0.1:%d", port)
	}
	t.Fatal("no free pair of consecutive loopback ports")
	return ""
}

var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

func isTutorialCommand(line string) bool {
	for _, p := range []string{"go ", "GOOS=", "echo ", "(cd ", "mkdir ", "curl "} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// setPolicyEntry replaces the entry of entry's kind in the policies file
// at path with entry, as the tutorial asks, writing through a rename as
// an editor does.
func setPolicyEntry(t *testing.T, path, entry string) {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal([]byte(entry), &e); err != nil {
		t.Fatalf("README's policies.json entry: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pf map[string][]map[string]any
	if err := json.Unmarshal(b, &pf); err != nil {
		t.Fatal(err)
	}
	replaced := false
	for i, old := range pf["policies"] {
		if old["kind"] == e["kind"] {
			pf["policies"][i], replaced = e, true
		}
	}
	if !replaced {
		t.Fatalf("policies.json has no %v entry", e["kind"])
	}
	out, _ := json.MarshalIndent(pf, "", "  ")
	mustWrite(t, path+".tmp", string(out)+"\n")
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// waitServe waits for the tutorial's `go run ./cmd/wingate serve` to be
// ready: it first compiles the command in the fresh clone, which on a
// machine busy with the rest of the suite takes minutes. A server that
// exits, or is not ready in 8 minutes, fails the test with its output.
func waitServe(t *testing.T, exited chan error, base string, log *testkit.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Minute)
	for {
		resp, err := httpClient.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case werr := <-exited:
			exited <- werr // for the cleanup
			t.Fatalf("serve exited (%v) before it was ready:\n%s", werr, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not 200 after 8 minutes (last error %v); serve's output:\n%s", base, err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startServe(t *testing.T, dir string, env []string, line string, log *testkit.SyncBuffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = log, log
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started: %s", line)
	return cmd
}

// runTutorialCommand runs line and checks that each wanted line matches
// a line of its output. A read-only command (policy ls) that lacks a
// wanted line is run again for up to a minute: the server applies a
// directory change a moment after the file is written.
func runTutorialCommand(t *testing.T, dir string, env []string, line string, want []string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "sh", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("README command failed: %s\n%s\n%v", line, out, err)
		}
		missing := ""
		for _, w := range want {
			if !outputHas(string(out), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			t.Logf("ran: %s", line)
			return
		}
		if !strings.Contains(line, "policy ls") || time.Now().After(deadline) {
			t.Fatalf("README command %s: output lacks %q:\n%s", line, missing, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// outputHas reports whether a line of out matches pattern: its pieces
// between "…" in order, blank space compared as one space.
func outputHas(out, pattern string) bool {
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, l := range strings.Split(out, "\n") {
		// A progress line ends in a carriage return; the table follows.
		for _, seg := range strings.Split(l, "\r") {
			rest, ok := norm(seg), true
			for _, piece := range strings.Split(pattern, "…") {
				piece = strings.TrimSpace(norm(piece))
				k := strings.Index(rest, piece)
				if k < 0 {
					ok = false
					break
				}
				rest = rest[k+len(piece):]
			}
			if ok {
				return true
			}
		}
	}
	return false
}
