package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
)

func newAdminServer(t *testing.T, token string, uploadLimit int) *Server {
	t.Helper()
	rt, err := policy.NewRuntime(context.Background(), policy.Options{CacheDir: "off"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	mgr, err := rollout.New(rollout.Config{Runtime: rt, Store: rollout.NewMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	cfg := DefaultConfig()
	cfg.AdminUploadLimit = uploadLimit
	return New(cfg, Deps{Rollout: mgr, AdminToken: token, Policies: mgr.Decider()})
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("status %d, body %q is not a JSON error", resp.StatusCode, b)
	}
	return body.Error.Code
}

func TestAdminAuth(t *testing.T) {
	enabled := newAdminServer(t, "s3cret-token", 1024)
	disabled := newAdminServer(t, "", 1024)
	tests := []struct {
		name   string
		srv    *Server
		auth   string
		status int
		code   string
	}{
		// The right token first: the wrong ones below use up the
		// failures this client may make (TestAdminFailureLimit).
		{"right token", enabled, "Bearer s3cret-token", http.StatusOK, ""},
		{"disabled without a configured token", disabled, "Bearer anything", http.StatusForbidden, "admin_disabled"},
		{"disabled even with no header", disabled, "", http.StatusForbidden, "admin_disabled"},
		{"no token", enabled, "", http.StatusUnauthorized, "unauthorized"},
		{"empty bearer", enabled, "Bearer ", http.StatusUnauthorized, "unauthorized"},
		{"wrong token", enabled, "Bearer s3cret-tokem", http.StatusUnauthorized, "unauthorized"},
		{"token prefix", enabled, "Bearer s3cret", http.StatusUnauthorized, "unauthorized"},
		{"other scheme", enabled, "Basic s3cret-token", http.StatusUnauthorized, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/admin/policies", "/admin/status"} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				resp, err := tt.srv.App().Test(req, -1)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tt.status {
					t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, tt.status)
				}
				if tt.code != "" {
					if got := errorCode(t, resp); got != tt.code {
						t.Fatalf("%s: code %q, want %q", path, got, tt.code)
					}
				} else {
					resp.Body.Close()
				}
			}
		})
	}
}

func TestAdminUploadLimits(t *testing.T) {
	srv := newAdminServer(t, "tok", 1024)
	do := func(req *http.Request) *http.Response {
		t.Helper()
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// A raw module over the limit.
	resp := do(httptest.NewRequest(http.MethodPost, "/admin/policies?kind=cache", bytes.NewReader(make([]byte, 4096))))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || errorCode(t, resp) != "body_too_large" {
		t.Fatalf("raw upload over the limit: status %d", resp.StatusCode)
	}
	// A multipart module over the limit.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("kind", "cache")
	fw, _ := mw.CreateFormFile("wasm", "big.wasm")
	fw.Write(make([]byte, 2048))
	mw.Close()
	req := httptest.NewRequest(http.MethodPost, "/admin/policies", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp = do(req)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || errorCode(t, resp) != "body_too_large" {
		t.Fatalf("multipart upload over the limit: status %d", resp.StatusCode)
	}
	// Larger than the whole request limit: refused by the HTTP server
	// before any handler (on a real connection).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	big, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/admin/policies?kind=cache", bytes.NewReader(make([]byte, 3<<20)))
	big.Header.Set("Authorization", "Bearer tok")
	if resp, err := http.DefaultClient.Do(big); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("upload over the request limit: status %d", resp.StatusCode)
		}
	} // else the server closed the connection while the body was sent: refused too
	// The admin token does not raise the limit of other routes.
	if st, _ := rawExchange(t, ln.Addr().String(), "POST /healthz HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer tok\r\nContent-Length: 2097152\r\n\r\n", 2<<20, false, 1); len(st) != 1 || st[0] != http.StatusRequestEntityTooLarge {
		t.Fatalf("non-admin body over BodyLimit: answers %v", st)
	}
	// Bad input names the field.
	for _, tt := range []struct{ url, field string }{
		{"/admin/policies", "kind"},
		{"/admin/policies?kind=nope", "kind"},
		{"/admin/policies?kind=cache&config=%7Bnot", "config"},
		{"/admin/policies?kind=cache&deadline_ms=x", "deadline_ms"},
		{"/admin/policies?kind=cache&activate=maybe", "activate"},
		{"/admin/policies?kind=cache&cases=%7B%7D", "cases"},
	} {
		resp := do(httptest.NewRequest(http.MethodPost, tt.url, strings.NewReader("\x00asm")))
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tt.field) {
			t.Errorf("%s: status %d body %s, want 400 naming %s", tt.url, resp.StatusCode, b, tt.field)
		}
	}
	// Unknown ids and kinds.
	for _, tt := range []struct {
		method, url string
		status      int
	}{
		{http.MethodPost, "/admin/policies/99/activate", http.StatusNotFound},
		{http.MethodPost, "/admin/policies/x/activate", http.StatusBadRequest},
		{http.MethodPost, "/admin/rollback/cache", http.StatusConflict},
		{http.MethodPost, "/admin/rollback/nope", http.StatusBadRequest},
		{http.MethodPost, "/admin/rollback/cache?to=99", http.StatusConflict},
		{http.MethodPost, "/admin/rollback/cache?to=0", http.StatusBadRequest},
		{http.MethodPost, "/admin/rollback/cache?to=-4", http.StatusBadRequest},
		{http.MethodPost, "/admin/rollback/cache?to=1e3", http.StatusBadRequest},
		{http.MethodPost, "/admin/rollback/cache?to=99999999999999999999", http.StatusBadRequest},
		{http.MethodDelete, "/admin/shadow/cache", http.StatusNotFound},
	} {
		resp := do(httptest.NewRequest(tt.method, tt.url, nil))
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.url, resp.StatusCode, tt.status)
		}
	}
}
