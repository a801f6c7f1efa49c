package cli

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealth: 200 on the path is exit 0; any other status, a refused
// connection or a server that never answers is exit 1 within --timeout;
// a path other than /readyz and /healthz, or a timeout out of range, is
// a usage error (2). A listen address on every interface is reached on
// loopback.
func TestHealth(t *testing.T) {
	status := map[string]int{"/readyz": http.StatusServiceUnavailable, "/healthz": http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, ok := status[r.URL.Path]
		if !ok {
			code = http.StatusNotFound
		}
		w.WriteHeader(code)
		w.Write([]byte(strings.Repeat("x", 1<<20))) // never read past a few KiB
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	addr := srv.Listener.Addr().String()

	if code, out, errOut := runCmd(t, "health", "--addr", addr, "--path", "/healthz"); code != 0 || !strings.Contains(out, "200") {
		t.Errorf("health --path /healthz on 200: code %d, out %q, err %q", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, "health", "--addr", "0.0.0.0:"+port, "--path", "/healthz"); code != 0 {
		t.Errorf("health on the any-address: code %d, err %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "health", "--addr", addr); code != 1 || !strings.Contains(errOut, "503") {
		t.Errorf("health (/readyz) on 503: code %d, err %q; want 1 naming the status", code, errOut)
	}
	t.Setenv("WINGATE_ADDR", addr)
	if code, _, _ := runCmd(t, "health", "--path", "/healthz"); code != 0 {
		t.Errorf("health with WINGATE_ADDR: code %d, want 0", code)
	}

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if code, _, _ := runCmd(t, "health", "--addr", closed); code != 1 {
		t.Errorf("health on a closed port: code %d, want 1", code)
	}

	// A server that accepts and never answers: the timeout ends it.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	if code, _, _ := runCmd(t, "health", "--addr", hang.Addr().String(), "--timeout", "300ms"); code != 1 {
		t.Errorf("health on a silent server: code %d, want 1", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("health on a silent server took %s with --timeout 300ms", d)
	}

	for _, args := range [][]string{
		{"--addr", addr, "--path", "/metrics"},
		{"--addr", addr, "--path", "/admin/policies"},
		{"--addr", addr, "--timeout", "0s"},
		{"--addr", addr, "--timeout", "2m"},
		{"--addr", addr, "extra"},
	} {
		if code, _, _ := runCmd(t, append([]string{"health"}, args...)...); code != 2 {
			t.Errorf("health %v: code %d, want 2", args, code)
		}
	}
}
