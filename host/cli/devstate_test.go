package cli

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestConfiguredAddr: the client commands find the server where serve
// listens: WINGATE_ADDR, else the addr of the WINGATE_CONFIG file, else
// the default; the admin base URL reaches an any-address listener on
// loopback.
func TestConfiguredAddr(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wingate.json")
	if err := os.WriteFile(file, []byte(`{"addr": "127.0.0.1:9123"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got := configuredAddr(getenv); got != "127.0.0.1:8080" {
		t.Errorf("nothing set: %s", got)
	}
	env["WINGATE_CONFIG"] = file
	if got := configuredAddr(getenv); got != "127.0.0.1:9123" {
		t.Errorf("config file: %s", got)
	}
	env["WINGATE_ADDR"] = ":9200"
	if got := configuredAddr(getenv); got != ":9200" {
		t.Errorf("WINGATE_ADDR: %s", got)
	}
	for in, want := range map[string]string{
		":9200": "http://127.0.0.1:9200", "0.0.0.0:9200": "http://127.0.0.1:9200", "[::]:9200": "http://[::1]:9200",
		"10.1.2.3:80": "http://10.1.2.3:80", "http://h:1/": "http://h:1", "localhost:9": "http://localhost:9",
	} {
		if got := serverBaseURL(in); got != want {
			t.Errorf("serverBaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDevKey: loopback spellings of one port share a key; other hosts and
// ports do not; hostile addresses cannot leave the development directory.
func TestDevKey(t *testing.T) {
	same := []string{":8081", "127.0.0.1:8081", "localhost:8081", "[::1]:8081", "0.0.0.0:8081", "http://127.0.0.1:8081/"}
	k0, err := devKey(same[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range same[1:] {
		if k, err := devKey(a); err != nil || k != k0 {
			t.Errorf("devKey(%q) = %q, %v; want %q", a, k, err, k0)
		}
	}
	for _, a := range []string{":8082", "10.0.0.1:8081", "127.0.0.2:8081"} {
		if k, _ := devKey(a); k == k0 {
			t.Errorf("devKey(%q) = %q, shared with %s", a, k, same[0])
		}
	}
	for _, a := range []string{"../../etc:22", "a/b:1", "..:..", "x:/../../y"} {
		k, err := devKey(a)
		if err != nil {
			continue
		}
		if k == "." || k == ".." || filepath.Base(k) != k || k == "" {
			t.Errorf("devKey(%q) = %q: not one plain name", a, k)
		}
	}
	for _, a := range []string{"", "nohost", "host:"} {
		if _, err := devKey(a); err == nil {
			t.Errorf("devKey(%q): no error", a)
		}
	}
}

// TestEnsureDevFileHammer: many servers starting at once on one address
// agree on one secret, and it is never rewritten afterwards.
func TestEnsureDevFileHammer(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	const n = 16
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := ensureDevFile("127.0.0.1:7001", devSecretFile)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	for _, v := range got {
		if v == "" || v != got[0] {
			t.Fatalf("concurrent starts made different secrets: %q", got)
		}
	}
	path, _ := devFile("127.0.0.1:7001", devSecretFile)
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("left-over temporary files: %v", entries)
	}
	if v, _, _ := ensureDevFile(":7001", devSecretFile); v != got[0] {
		t.Fatal("a later start rewrote the secret")
	}
	// An empty file (a crash while writing) is an error, not a new secret.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ensureDevFile("127.0.0.1:7001", devSecretFile); err == nil {
		t.Fatal("an empty secret file was accepted")
	}
}
