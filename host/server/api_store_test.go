package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/memstore"
)

var testSecret = []byte("test-secret-0123456789abcdef")

type apiFixture struct {
	srv        *Server
	st         *memstore.Store
	auth       *auth.Authority
	alice, bob store.User
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	a, err := auth.New(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	f := &apiFixture{st: st, auth: a}
	ctx := context.Background()
	f.alice, _ = st.CreateUser(ctx, store.User{Name: "Alice", City: "London", OpenToWingman: true})
	f.bob, _ = st.CreateUser(ctx, store.User{Name: "Bob", City: "London", OpenToWingman: true})
	if _, err := st.PutLocation(ctx, store.Location{UserID: f.bob.ID, Lat: 51.51, Lon: -0.12}); err != nil {
		t.Fatal(err)
	}
	f.srv = New(DefaultConfig(), Deps{Store: st, Auth: a})
	return f
}

func (f *apiFixture) token(t *testing.T, id int64) string {
	t.Helper()
	tok, err := f.auth.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do sends a request and decodes the JSON answer into a map.
func (f *apiFixture) do(t *testing.T, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.srv.App().Test(req, 10_000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: content type %q, body %s", method, path, ct, raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: body %s: %v", method, path, raw, err)
	}
	return resp.StatusCode, m
}

func apiErrCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestAuthRejectsBadTokens(t *testing.T) {
	f := newAPIFixture(t)
	other, _ := auth.New([]byte("another-secret-0123456789abcdef"))
	forged, _ := other.Issue(f.alice.ID, time.Hour)
	past, _ := auth.New(testSecret, auth.WithClock(func() time.Time { return time.Now().Add(-3 * time.Hour) }))
	expired, _ := past.Issue(f.alice.ID, time.Hour)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{Subject: "1", Issuer: auth.Issuer,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.RegisteredClaims{Subject: "1", Issuer: auth.Issuer,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(testSecret)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "1", Issuer: auth.Issuer}).SignedString(testSecret)
	badSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "alice", Issuer: auth.Issuer,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(testSecret)
	valid := f.token(t, f.alice.ID)
	tampered := valid[:len(valid)-2] + "xx"

	path := "/api/users/1/reputation"
	for _, tc := range []struct {
		name, header string
		wantStatus   int
		wantCode     string
	}{
		{"missing", "", 401, "unauthorized"},
		{"not bearer", "Basic " + valid, 401, "unauthorized"},
		{"empty bearer", "Bearer ", 401, "unauthorized"},
		{"garbage", "Bearer not.a.jwt", 401, "unauthorized"},
		{"forged with another key", "Bearer " + forged, 401, "token_wrong_key"},
		{"tampered signature", "Bearer " + tampered, 401, "token_wrong_key"}, // an HMAC cannot tell the two apart
		{"alg none", "Bearer " + none, 401, "unauthorized"},
		{"other algorithm", "Bearer " + hs512, 401, "unauthorized"},
		{"no expiry", "Bearer " + noExp, 401, "token_no_expiry"},
		{"subject not a user id", "Bearer " + badSub, 401, "token_subject"},
		{"expired", "Bearer " + expired, 401, "token_expired"},
		{"valid", "Bearer " + valid, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := f.srv.App().Test(req, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.wantStatus || apiErrCode(m) != tc.wantCode {
				t.Fatalf("status %d code %q, want %d %q (body %v)", resp.StatusCode, apiErrCode(m), tc.wantStatus, tc.wantCode, m)
			}
		})
	}
}

func TestOwnResourcesOnly(t *testing.T) {
	f := newAPIFixture(t)
	alice := f.token(t, f.alice.ID)
	bobID := itoa(f.bob.ID)
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/users/" + bobID + "/location", "", 403},
		{"PUT", "/api/users/" + bobID + "/location", `{"lat":1,"lon":2}`, 403},
		{"GET", "/api/users/" + bobID + "/matches", "", 403},
		// Reputation is public to members.
		{"GET", "/api/users/" + bobID + "/reputation", "", 200},
	} {
		status, m := f.do(t, tc.method, tc.path, alice, tc.body)
		if status != tc.want {
			t.Errorf("%s %s = %d %v, want %d", tc.method, tc.path, status, m, tc.want)
		}
		if tc.want == 403 && apiErrCode(m) != "forbidden" {
			t.Errorf("%s %s: code %q, want forbidden", tc.method, tc.path, apiErrCode(m))
		}
	}
	// Bob's location is untouched.
	loc, err := f.st.GetLocation(context.Background(), f.bob.ID)
	if err != nil || loc.Lat != 51.51 {
		t.Fatalf("bob's location = %+v, %v", loc, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestInvalidInputNamesTheField(t *testing.T) {
	f := newAPIFixture(t)
	tok := f.token(t, f.alice.ID)
	me := "/api/users/" + itoa(f.alice.ID)
	for _, tc := range []struct {
		method, path, body string
		wantStatus         int
		wantCode           string
	}{
		{"GET", "/api/challenges?limit=0", "", 400, "invalid_limit"},
		{"GET", "/api/challenges?limit=101", "", 400, "invalid_limit"},
		{"GET", "/api/challenges?limit=ten", "", 400, "invalid_limit"},
		{"GET", "/api/challenges?category=juggling", "", 400, "invalid_category"},
		{"GET", "/api/challenges?difficulty=trivial", "", 400, "invalid_difficulty"},
		{"GET", "/api/challenges?cursor=abc", "", 400, "invalid_cursor"},
		{"GET", "/api/challenges/abc", "", 400, "invalid_id"},
		{"GET", "/api/challenges/0", "", 400, "invalid_id"},
		{"GET", "/api/challenges/9999", "", 404, "not_found"},
		{"POST", "/api/challenges/-3/complete", "", 400, "invalid_id"},
		{"POST", "/api/challenges/9999/complete", "", 404, "not_found"},
		{"GET", "/api/users/x/reputation", "", 400, "invalid_id"},
		{"GET", me + "/reputation?recent=1000", "", 400, "invalid_recent"},
		{"GET", me + "/matches?radius_km=0", "", 400, "invalid_radius_km"},
		{"GET", me + "/matches?radius_km=abc", "", 400, "invalid_radius_km"},
		{"GET", me + "/matches?radius_km=NaN", "", 400, "invalid_radius_km"},
		{"GET", me + "/matches?radius_km=500", "", 400, "invalid_radius_km"},
		{"GET", me + "/matches?limit=0", "", 400, "invalid_limit"},
		{"GET", me + "/matches", "", 404, "not_found"}, // no location yet
		{"GET", me + "/location", "", 404, "not_found"},
		{"PUT", me + "/location", `{"lat":91,"lon":0}`, 400, "invalid_lat"},
		{"PUT", me + "/location", `{"lat":10,"lon":-180.5}`, 400, "invalid_lon"},
		{"PUT", me + "/location", `{"lon":1}`, 400, "invalid_lat"},
		{"PUT", me + "/location", `{"lat":1}`, 400, "invalid_lon"},
		{"PUT", me + "/location", `{"lat":"north","lon":1}`, 400, "invalid_body"},
		{"PUT", me + "/location", `{"lat":1,"lon":2,"alt":3}`, 400, "invalid_body"},
		{"PUT", me + "/location", `[1,2]`, 400, "invalid_body"},
		{"PUT", me + "/location", `{"lat":1,"lon":2}{}`, 400, "invalid_body"},
		{"PUT", me + "/location", `{"lat":1,"lon":2,"pad":"` + strings.Repeat("x", 2000) + `"}`, 413, "body_too_large"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			status, m := f.do(t, tc.method, tc.path, tok, tc.body)
			if status != tc.wantStatus || apiErrCode(m) != tc.wantCode {
				t.Fatalf("= %d %v, want %d %q", status, m, tc.wantStatus, tc.wantCode)
			}
		})
	}
}

func TestServerBodyLimit(t *testing.T) {
	st := memstore.New()
	a, _ := auth.New(testSecret)
	u, _ := st.CreateUser(context.Background(), store.User{Name: "A"})
	cfg := DefaultConfig()
	cfg.BodyLimit = 4 << 10
	srv := New(cfg, Deps{Store: st, Auth: a})
	tok, _ := a.Issue(u.ID, time.Hour)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	req, _ := http.NewRequest("PUT", "http://"+ln.Addr().String()+"/api/users/"+itoa(u.ID)+"/location",
		strings.NewReader(strings.Repeat(" ", 8<<10)))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "body_too_large") {
		t.Fatalf("= %d %s, want 413 body_too_large JSON", resp.StatusCode, body)
	}
}

func TestWingmanFlow(t *testing.T) {
	f := newAPIFixture(t)
	tok := f.token(t, f.alice.ID)
	me := "/api/users/" + itoa(f.alice.ID)

	// Catalogue: public, paginated by cursor, filtered.
	seen := map[float64]bool{}
	path := "/api/challenges?limit=50"
	for pages := 0; path != ""; pages++ {
		status, m := f.do(t, "GET", path, "", "")
		if status != 200 || pages > 10 {
			t.Fatalf("GET %s = %d %v", path, status, m)
		}
		for _, it := range m["items"].([]any) {
			id := it.(map[string]any)["id"].(float64)
			if seen[id] {
				t.Fatalf("challenge %v listed twice", id)
			}
			seen[id] = true
		}
		path = ""
		if nc, ok := m["next_cursor"].(string); ok {
			path = "/api/challenges?limit=50&cursor=" + nc
		}
	}
	if len(seen) != 200 {
		t.Fatalf("paged through %d challenges, want 200", len(seen))
	}
	status, m := f.do(t, "GET", "/api/challenges?category=dating&difficulty=easy", "", "")
	if status != 200 || len(m["items"].([]any)) == 0 {
		t.Fatalf("filtered list = %d %v", status, m)
	}
	for _, it := range m["items"].([]any) {
		ch := it.(map[string]any)
		if ch["category"] != "dating" || ch["difficulty"] != "easy" {
			t.Fatalf("filter leaked %v", ch)
		}
	}
	status, m = f.do(t, "GET", "/api/challenges/7", "", "")
	if status != 200 || m["id"].(float64) != 7 {
		t.Fatalf("GET challenge 7 = %d %v", status, m)
	}

	// Completion: 201 once, then 200 with the same completion.
	status, first := f.do(t, "POST", "/api/challenges/7/complete", tok, "")
	if status != 201 || first["created"] != true || first["score"].(float64) != first["points"].(float64) {
		t.Fatalf("first completion = %d %v", status, first)
	}
	status, again := f.do(t, "POST", "/api/challenges/7/complete", tok, "")
	if status != 200 || again["created"] != false || again["id"] != first["id"] || again["score"] != first["score"] {
		t.Fatalf("repeated completion = %d %v", status, again)
	}
	status, m = f.do(t, "POST", "/api/challenges/7/complete", "", "")
	if status != 401 {
		t.Fatalf("anonymous completion = %d %v", status, m)
	}
	status, rep := f.do(t, "GET", me+"/reputation", tok, "")
	if status != 200 || rep["score"] != first["score"] || len(rep["categories"].([]any)) != 1 || len(rep["recent"].([]any)) != 1 {
		t.Fatalf("reputation = %d %v", status, rep)
	}

	// Location: PUT returns what was stored; GET agrees; matches find Bob.
	status, put := f.do(t, "PUT", me+"/location", tok, `{"lat": 51.5, "lon": -0.1}`)
	if status != 200 || put["lat"] != 51.5 || put["lon"] != -0.1 || put["updated_at"] == "" {
		t.Fatalf("PUT location = %d %v", status, put)
	}
	status, got := f.do(t, "GET", me+"/location", tok, "")
	if status != 200 || got["lat"] != put["lat"] || got["updated_at"] != put["updated_at"] {
		t.Fatalf("GET location = %d %v, want %v", status, got, put)
	}
	status, m = f.do(t, "GET", me+"/matches?radius_km=5&limit=5", tok, "")
	if status != 200 {
		t.Fatalf("matches = %d %v", status, m)
	}
	ms := m["matches"].([]any)
	if len(ms) != 1 || ms[0].(map[string]any)["user_id"].(float64) != float64(f.bob.ID) {
		t.Fatalf("matches = %v, want Bob", m)
	}
}

func TestStoreUnavailableIs503(t *testing.T) {
	srv := New(DefaultConfig(), Deps{Store: downStore{memstore.New()}})
	resp, err := srv.App().Test(httptest.NewRequest("GET", "/api/challenges", nil), 10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 503 || apiErrCode(m) != "unavailable" {
		t.Fatalf("= %d %v, want 503 unavailable", resp.StatusCode, m)
	}
}

type downStore struct{ *memstore.Store }

func (downStore) ListChallenges(context.Context, store.ChallengeFilter) (store.ChallengePage, error) {
	return store.ChallengePage{}, store.ErrUnavailable
}

func FuzzParseLocationBody(f *testing.F) {
	for _, s := range []string{`{"lat":1,"lon":2}`, `{"lat":-90,"lon":180}`, `{"lat":91,"lon":0}`, `{}`, `null`,
		`{"lat":1e309,"lon":0}`, `{"lat":"1","lon":2}`, `{"lat":1,"lon":2}x`, ``, `{"lat":1,"lon":2,"z":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		lat, lon, err := parseLocationBody(body)
		if err != nil {
			if _, internal := apiError(err); internal {
				t.Fatalf("error %v is not one the error table foresees", err)
			}
			return
		}
		if !(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180) {
			t.Fatalf("accepted out-of-range %v, %v from %q", lat, lon, body)
		}
	})
}
