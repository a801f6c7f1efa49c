package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
)

// adminDo sends req with the admin token and returns the status and the
// decoded error body.
func adminDo(t *testing.T, srv *Server, req *http.Request) (int, map[string]any, string) {
	t.Helper()
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Error map[string]any `json:"error"`
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &body); err != nil || body.Error["code"] == nil {
			t.Fatalf("status %d: body %q is not a JSON error with a code", resp.StatusCode, b)
		}
	}
	return resp.StatusCode, body.Error, string(b)
}

// TestAdminPushLimits pushes every setting over its documented ceiling
// (policy's limits): each is refused with 400 (413 for the module), the
// stable code over_limit, the field and the limit; nothing is stored.
func TestAdminPushLimits(t *testing.T) {
	// An upload limit above the module cap: the manager's own check
	// still refuses a module over policy.MaxModuleBytes.
	srv := newAdminServer(t, "tok", policy.MaxModuleBytes+2<<20)
	module := []byte("\x00asm\x01\x00\x00\x00")
	cases := func(n int) string {
		return "[" + strings.Repeat(`{"name":"c","input":{"method":"GET","route":"/","path":"/"},"want":{"action":"bypass"}},`, n-1) +
			`{"name":"c","input":{"method":"GET","route":"/","path":"/"},"want":{"action":"bypass"}}]`
	}
	for _, tt := range []struct {
		name   string
		fields map[string]string
		wasm   []byte
		status int
		field  string
		limit  float64
	}{
		{"deadline 1e9", map[string]string{"deadline_ms": "1000000000"}, module, 400, "deadline_ms", policy.MaxDeadlineMS},
		{"deadline just over", map[string]string{"deadline_ms": "10000.001"}, module, 400, "deadline_ms", policy.MaxDeadlineMS},
		{"deadline inf", map[string]string{"deadline_ms": "+Inf"}, module, 400, "deadline_ms", policy.MaxDeadlineMS},
		{"config", map[string]string{"config": `"` + strings.Repeat("x", policy.MaxConfigBytes) + `"`}, module, 400, "config", policy.MaxConfigBytes},
		{"cases bytes", map[string]string{"cases": `[` + strings.Repeat(" ", policy.MaxCasesBytes) + `]`}, module, 400, "cases", policy.MaxCasesBytes},
		{"cases count", map[string]string{"cases": cases(policy.MaxCases + 1)}, module, 400, "cases", policy.MaxCases},
		{"signature", map[string]string{"signature": strings.Repeat("A", policy.MaxSignatureBytes+1)}, module, 400, "signature", policy.MaxSignatureBytes},
		{"name", map[string]string{"name": strings.Repeat("n", policy.MaxNameBytes+1)}, module, 400, "name", policy.MaxNameBytes},
		{"module", nil, make([]byte, policy.MaxModuleBytes+1), 413, "wasm", policy.MaxModuleBytes},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			mw.WriteField("kind", "cache")
			for k, v := range tt.fields {
				mw.WriteField(k, v)
			}
			fw, _ := mw.CreateFormFile("wasm", "m.wasm")
			fw.Write(tt.wasm)
			mw.Close()
			req := httptest.NewRequest(http.MethodPost, "/admin/policies", &body)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			status, e, raw := adminDo(t, srv, req)
			if status != tt.status || e["code"] != "over_limit" || e["field"] != tt.field || e["limit"] != tt.limit {
				t.Fatalf("status %d, error %s; want %d over_limit naming %s and its limit %v", status, raw[:min(len(raw), 300)], tt.status, tt.field, tt.limit)
			}
			t.Logf("%s", e["message"])
		})
	}
	// Bad values (not ceilings) are 400 invalid, naming the field.
	for _, q := range []string{"deadline_ms=-1", "deadline_ms=NaN", "name=../x", "name=a%20b", "default_tier=premium", "kind=route&default_tier=gold"} {
		v, _ := url.ParseQuery(q)
		if !v.Has("kind") {
			v.Set("kind", "cache")
		}
		status, e, raw := adminDo(t, srv, httptest.NewRequest(http.MethodPost, "/admin/policies?"+v.Encode(), bytes.NewReader(module)))
		if status != 400 || e["code"] != "invalid" {
			t.Errorf("%s: status %d %s, want 400 invalid", q, status, raw)
		}
	}
	status, _, raw := adminDo(t, srv, httptest.NewRequest(http.MethodGet, "/admin/policies", nil))
	if status != 200 || !strings.Contains(raw, `"versions":[]`) {
		t.Fatalf("something was stored: %d %s", status, raw)
	}
}

// failingStore is a version store whose every call fails, once armed,
// with a driver-like error carrying what a client must never see.
type failingStore struct {
	*rollout.MemStore
	fail atomic.Bool
}

const driverText = `FATAL: password authentication failed for user "wingate" (SQLSTATE 28P01) at 10.0.0.7:5432`

func (s *failingStore) err() error {
	if s.fail.Load() {
		return errors.New(driverText)
	}
	return nil
}
func (s *failingStore) Put(ctx context.Context, r *rollout.Record, w []byte) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.MemStore.Put(ctx, r, w)
}
func (s *failingStore) Get(ctx context.Context, id int64) (rollout.Record, error) {
	if err := s.err(); err != nil {
		return rollout.Record{}, err
	}
	return s.MemStore.Get(ctx, id)
}
func (s *failingStore) List(ctx context.Context) ([]rollout.Record, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.MemStore.List(ctx)
}

// TestAdminErrorsCarryNoDriverText: with the version store failing, every
// admin route of the push and rollback path answers a JSON error with a
// stable code, and no body carries the driver's text.
func TestAdminErrorsCarryNoDriverText(t *testing.T) {
	rt, err := policy.NewRuntime(context.Background(), policy.Options{CacheDir: "off"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	st := &failingStore{MemStore: rollout.NewMemStore()}
	mgr, err := rollout.New(rollout.Config{Runtime: rt, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	srv := New(DefaultConfig(), Deps{Rollout: mgr, AdminToken: "tok", Policies: mgr.Decider()})
	st.fail.Store(true)
	for _, r := range []struct{ method, url string }{
		{http.MethodPost, "/admin/policies?kind=cache"},
		{http.MethodPost, "/admin/policies?kind=cache&activate=true"},
		{http.MethodGet, "/admin/policies"},
		{http.MethodGet, "/admin/policies/1"},
		{http.MethodPost, "/admin/policies/1/activate"},
		{http.MethodPost, "/admin/policies/1/shadow"},
		{http.MethodPost, "/admin/rollback/cache"},
	} {
		status, e, raw := adminDo(t, srv, httptest.NewRequest(r.method, r.url, bytes.NewReader([]byte("\x00asm\x01\x00\x00\x00"))))
		if status != http.StatusServiceUnavailable || e["code"] != "store_unavailable" {
			t.Errorf("%s %s: %d %s, want 503 store_unavailable", r.method, r.url, status, raw)
		}
		if strings.Contains(raw, "SQLSTATE") || strings.Contains(raw, "password") || strings.Contains(raw, "10.0.0.7") {
			t.Errorf("%s %s: the body carries the driver's text: %s", r.method, r.url, raw)
		}
	}
	// A malformed multipart body: no Go parser text either.
	req := httptest.NewRequest(http.MethodPost, "/admin/policies", strings.NewReader("--x\r\nbroken"))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	status, e, raw := adminDo(t, srv, req)
	if status != 400 || e["code"] != "invalid_form" || strings.Contains(raw, "EOF") || strings.Contains(raw, "multipart: ") {
		t.Errorf("malformed multipart: %d %s", status, raw)
	}
}
