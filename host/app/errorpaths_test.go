package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/server"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// leakMarkers are texts of drivers, libraries and Go that no error body
// may carry.
var leakMarkers = []string{"pgx", "pgconn", "pgstore", "ERROR:", "SQLSTATE", "redis:", "json:", "strconv", "runtime error",
	"context deadline", "context canceled", "EOF", "dial tcp", "connection refused", "0x00", "UTF8", "goroutine",
	"fasthttp", "fiber", "invalid character", "cannot unmarshal", "jwt", "token is expired", "token is malformed", "signature is invalid", "leak-bait"}

// notReached are the codes of the table this test does not reach through
// the assembly, each with where it is shown instead.
var notReached = map[apierr.Code]string{
	apierr.Superseded:       "a race of two activations of one kind: host/rollout's tests",
	apierr.StoreUnavailable: "the policy version store failing mid-request: host/rollout and host/server's admin tests",
	apierr.ShuttingDown:     "a request racing the shutdown: host/server's chat tests",
	apierr.LLMTimeout:       "a provider past the chat's deadline: host/server's chat and OpenAI tests",
	apierr.Internal:         "an error no row of the table foresees (by definition unreachable by a client): TestErrorPathsLeakNothing in host/server",
	apierr.BadRequest:       "a framework error without a more precise code: TestErrorPathsLeakNothing in host/server",
	apierr.Conflict:         "a store conflict no route's input can cause (completions are idempotent): TestErrorPathsLeakNothing in host/server",
	apierr.LLMError:         "a provider refusal is a tier down to the chat, which falls back (llm_unavailable here): host/server's chat tests",
}

// TestEveryErrorPath reaches the codes of host/apierr through the real
// assembly (app.Build over PostgreSQL, both listeners, the OpenAI and
// Anthropic surfaces over a provider that fails) and checks each body:
// the table's code and status in the surface's shape (Anthropic's has a
// type for the status and no code), and no text of a driver, a library
// or Go (leakMarkers).
func TestEveryErrorPath(t *testing.T) {
	ctx := context.Background()
	dbURL, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_app_errors")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop() })
	setup, err := pgstore.Open(ctx, pgstore.Config{URL: dbURL, OpTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Seed(ctx, pgstore.SeedOptions{Users: 20}); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	du, _ := url.Parse(dbURL)
	proxy := testkit.StartFaultProxy(t, du.Host)
	pu := *du
	pu.Host = proxy.Addr()

	// The model provider refuses with text a leak would show.
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = b
		w.WriteHeader(503)
		io.WriteString(w, `{"error": {"message": "leak-bait: dial tcp 10.0.0.1:5432: pgx ERROR: SQLSTATE 22021", "type": "invalid_request_error"}}`)
	}))
	t.Cleanup(provider.Close)

	cfg := Defaults()
	cfg.Addr, cfg.PolicyDir, cfg.JWTSecret, cfg.AdminToken = "127.0.0.1:0", policyDir(t), testSecret, testAdminToken
	cfg.DatabaseURL, cfg.DBOpTimeout, cfg.DBAcquireTimeout = pu.String(), time.Second, 500*time.Millisecond
	cfg.LLMProvider, cfg.OpenAIBaseURL = "openai", provider.URL
	a := startReady(t, cfg, slog.New(slog.DiscardHandler))
	pub, ops := "http://"+a.Addr(), "http://"+a.OpsAddr()

	now := time.Now()
	sign := func(c jwt.RegisteredClaims) string {
		c.Issuer = auth.Issuer
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	user1 := sign(jwt.RegisteredClaims{Subject: "1", IssuedAt: at(0), ExpiresAt: at(time.Hour)})
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	admin := bearer(testAdminToken)
	// Virtual keys for the calls below, issued before any failed admin
	// attempt (those are limited per address).
	narrow := createKey(t, ops, `{"name": "narrow", "models": ["economy"]}`).Secret
	poor := createKey(t, ops, `{"name": "poor", "budget_usd": 0.000001}`).Secret
	slow := createKey(t, ops, `{"name": "slow", "rpm": 1}`).Secret
	multipartBody := func(fields map[string]string, wasm []byte) (string, string) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		for k, v := range fields {
			_ = w.WriteField(k, v)
		}
		fw, _ := w.CreateFormFile("wasm", "p.wasm")
		fw.Write(wasm)
		w.Close()
		return b.String(), w.FormDataContentType()
	}
	junkWasm, junkType := multipartBody(map[string]string{"kind": "cache", "name": "junk", "activate": "true"}, []byte("leak-bait: not a module"))
	bigCfg, bigCfgType := multipartBody(map[string]string{"kind": "cache", "name": "big", "config": `{"x": "` + strings.Repeat("a", 2<<20) + `"}`}, []byte("\x00asm"))

	type call struct {
		name, surface, method, url, body string
		headers                          map[string]string
		code                             apierr.Code
		status                           int
		// early: the server answers before reading the request or its
		// body; sent with sendRaw.
		early bool
	}
	withType := func(h map[string]string, ct string) map[string]string {
		m := map[string]string{"Content-Type": ct}
		for k, v := range h {
			m[k] = v
		}
		return m
	}
	calls := []call{
		{"bad JSON body", "api", "PUT", pub + "/api/users/1/location", `{"lat": 1,,}`, bearer(user1), apierr.InvalidBody, 400, false},
		{"NUL byte in a title (PostgreSQL refuses it)", "api", "POST", pub + "/api/chat/sessions", `{"title": "a\u0000b"}`, bearer(user1), apierr.Invalid, 400, false},
		{"id with a sign", "api", "GET", pub + "/api/challenges/+1", "", nil, "invalid_id", 400, false},
		{"no token", "api", "GET", pub + "/api/users/1/location", "", nil, apierr.Unauthorized, 401, false},
		{"forged token (a signature this server's key did not make)", "api", "GET", pub + "/api/users/1/location", "", bearer(user1[:len(user1)-3] + "AAA"), apierr.TokenWrongKey, 401, false},
		{"malformed token", "api", "GET", pub + "/api/users/1/location", "", bearer("not.a.token"), apierr.Unauthorized, 401, false},
		{"expired token", "api", "GET", pub + "/api/users/1/location", "", bearer(sign(jwt.RegisteredClaims{Subject: "1", ExpiresAt: at(-time.Minute)})), apierr.TokenExpired, 401, false},
		{"token without exp", "api", "GET", pub + "/api/users/1/location", "", bearer(sign(jwt.RegisteredClaims{Subject: "1"})), apierr.TokenNoExpiry, 401, false},
		{"token of a year", "api", "GET", pub + "/api/users/1/location", "", bearer(sign(jwt.RegisteredClaims{Subject: "1", IssuedAt: at(0), ExpiresAt: at(365 * 24 * time.Hour)})), apierr.TokenLifetime, 401, false},
		{"token from the future", "api", "GET", pub + "/api/users/1/location", "", bearer(sign(jwt.RegisteredClaims{Subject: "1", IssuedAt: at(time.Hour), ExpiresAt: at(2 * time.Hour)})), apierr.TokenNotYetValid, 401, false},
		{"token sub +1", "api", "GET", pub + "/api/users/1/location", "", bearer(sign(jwt.RegisteredClaims{Subject: "+1", ExpiresAt: at(time.Hour)})), apierr.TokenSubject, 401, false},
		{"someone else's location", "api", "GET", pub + "/api/users/2/location", "", bearer(user1), apierr.Forbidden, 403, false},
		{"no such challenge", "api", "GET", pub + "/api/challenges/999999", "", nil, apierr.NotFound, 404, false},
		{"no such route", "api", "GET", pub + "/api/nothing-here", "", nil, apierr.NotFound, 404, false},
		{"admin on the public listener", "api", "GET", pub + "/admin/status", "", admin, apierr.NotFound, 404, false},
		{"wrong method", "api", "DELETE", pub + "/api/challenges", "", nil, apierr.MethodNotAllowed, 405, false},
		{"body over the API's limit", "api", "POST", pub + "/api/chat/sessions", `{"title": "` + strings.Repeat("a", 2<<20) + `"}`, bearer(user1), apierr.BodyTooLarge, 413, true},
		{"broken multipart", "admin", "POST", ops + "/admin/policies", "--zz\r\nleak-bait", withType(admin, "multipart/form-data; boundary=zz"), apierr.InvalidForm, 400, false},
		{"junk module", "admin", "POST", ops + "/admin/policies", junkWasm, withType(admin, junkType), apierr.Rejected, 422, false},
		{"config over its ceiling", "admin", "POST", ops + "/admin/policies", bigCfg, withType(admin, bigCfgType), apierr.OverLimit, 400, false},
		{"no rollback target", "admin", "POST", ops + "/admin/rollback/cache", "", admin, apierr.NoRollbackTarget, 409, false},
		{"no such version", "admin", "GET", ops + "/admin/policies/99999", "", admin, apierr.NotFound, 404, false},
		{"admin without a token", "admin", "GET", ops + "/admin/status", "", nil, apierr.Unauthorized, 401, false},
		{"openai: no token", "openai", "POST", pub + "/v1/chat/completions", `{"model": "economy", "messages": [{"role": "user", "content": "hi"}]}`, nil, apierr.Unauthorized, 401, false},
		{"openai: token sub 01", "openai", "POST", pub + "/v1/chat/completions", `{"model": "economy", "messages": [{"role": "user", "content": "hi"}]}`, bearer(sign(jwt.RegisteredClaims{Subject: "01", ExpiresAt: at(time.Hour)})), apierr.TokenSubject, 401, false},
		{"openai: bad JSON", "openai", "POST", pub + "/v1/chat/completions", `{"model": `, bearer(user1), apierr.InvalidBody, 400, false},
		{"openai: unknown model", "openai", "POST", pub + "/v1/chat/completions", `{"model": "gpt-nothing", "messages": [{"role": "user", "content": "hi"}]}`, bearer(user1), apierr.ModelNotFound, 404, false},
		{"openai: parameter no provider takes", "openai", "POST", pub + "/v1/chat/completions", `{"model": "auto", "logprobs": true, "messages": [{"role": "user", "content": "hi"}]}`, bearer(user1), apierr.Unsupported, 400, false},
		{"openai: no such path", "openai", "GET", pub + "/v1/nothing-here", "", bearer(user1), apierr.NotFound, 404, false},
		{"openai: every tier down", "openai", "POST", pub + "/v1/chat/completions", `{"model": "auto", "messages": [{"role": "user", "content": "hello"}]}`, bearer(user1), apierr.LLMUnavailable, 503, false},
		{"anthropic: no key", "anthropic", "POST", pub + "/v1/messages", `{"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}`, nil, apierr.Unauthorized, 401, false},
		{"anthropic: bad JSON", "anthropic", "POST", pub + "/v1/messages", `{"model": `, bearer(user1), apierr.InvalidBody, 400, false},
		{"anthropic: unknown model", "anthropic", "POST", pub + "/v1/messages", `{"model": "claude-nothing", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}`, map[string]string{"X-Api-Key": user1}, apierr.ModelNotFound, 404, false},
		{"anthropic: every tier down", "anthropic", "POST", pub + "/v1/messages", `{"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}`, bearer(user1), apierr.LLMUnavailable, 503, false},
	}
	// The failed admin attempts of the calls above and these use up the
	// client's bucket: the next is rate limited.
	for range server.AdminFailBurst - 1 { // "admin without a token" was one

		calls = append(calls, call{"admin: a wrong token", "admin", "GET", ops + "/admin/status", "", bearer("wrong-" + testAdminToken), apierr.Unauthorized, 401, false})
	}
	calls = append(calls, call{"admin: too many failures", "admin", "GET", ops + "/admin/status", "", admin, apierr.RateLimited, 429, false})

	reached := map[apierr.Code]bool{}
	hc := &http.Client{Timeout: 30 * time.Second}
	// send makes the call with the HTTP client; the calls the server
	// answers before the request is written (over a limit) take sendRaw.
	send := func(req *http.Request) (*http.Response, error) { return hc.Do(req) }
	check := func(c call) {
		t.Helper()
		req, _ := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
		if c.body != "" && c.headers["Content-Type"] == "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		do := send
		if c.early {
			do = sendRaw
		}
		res, err := do(req)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			return
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, m := range leakMarkers {
			if strings.Contains(strings.ToLower(string(body)), strings.ToLower(m)) {
				t.Errorf("%s: body carries %q: %s", c.name, m, body)
			}
		}
		if c.surface == "anthropic" {
			// Anthropic's shape has a type for the status, no code.
			var an struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			want := map[int]string{400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
				429: "rate_limit_error", 503: "overloaded_error"}[c.status]
			if json.Unmarshal(body, &an) != nil || an.Type != "error" || an.Error.Message == "" || res.StatusCode != c.status || an.Error.Type != want {
				t.Errorf("%s: %d %.300s; want %d with an Anthropic error of type %s", c.name, res.StatusCode, body, c.status, want)
			}
			return
		}
		var shape struct {
			Error struct {
				Code    *string `json:"code"`
				Type    string  `json:"type"`
				Message string  `json:"message"`
			} `json:"error"`
		}
		err = json.Unmarshal(body, &shape)
		if err == nil && shape.Error.Code == nil && c.surface == "openai" && c.code == apierr.InvalidBody {
			// OpenAI's own answer to an unreadable body has a null code.
			code := string(apierr.InvalidBody)
			shape.Error.Code = &code
		}
		if err != nil || shape.Error.Code == nil || shape.Error.Message == "" {
			t.Errorf("%s: %d %.300s is not an error of the %s shape", c.name, res.StatusCode, body, c.surface)
			return
		}
		want := string(c.code)
		if c.surface == "openai" {
			var typ string
			typ, want = apierr.New(c.code).OpenAIType()
			if c.code == apierr.InvalidBody {
				want = string(apierr.InvalidBody)
			}
			if shape.Error.Type != typ {
				t.Errorf("%s: OpenAI type %q, want %q", c.name, shape.Error.Type, typ)
			}
		}
		if res.StatusCode != c.status || *shape.Error.Code != want {
			t.Errorf("%s: %d %s, want %d %s: %.300s", c.name, res.StatusCode, *shape.Error.Code, c.status, want, body)
			return
		}
		if e, ok := apierr.Lookup(c.code); ok {
			reached[e.Code] = true
			if strings.HasPrefix(string(c.code), "invalid_") {
				reached[apierr.Invalid] = true // the family's entry
			}
		}
	}
	for _, c := range calls {
		check(c)
	}

	// The database away: store routes answer 503 unavailable.
	proxy.SetMode(testkit.ProxyRefuse)
	check(call{"database away", "api", "GET", pub + "/api/users/1/location", "", bearer(user1), apierr.Unavailable, 503, false})
	proxy.SetMode(testkit.ProxyForward)

	// Virtual keys: a model the key may not call, a spent budget, a
	// rate limit, and (below) limits that cannot be checked.
	chatBody := `{"model": "economy", "messages": [{"role": "user", "content": "hi"}]}`
	check(call{"key: a model it may not call", "openai", "POST", pub + "/v1/chat/completions",
		`{"model": "premium", "messages": [{"role": "user", "content": "hi"}]}`, bearer(narrow), apierr.ModelNotAllowed, 403, false})
	check(call{"key: budget spent", "openai", "POST", pub + "/v1/chat/completions", chatBody, bearer(poor), apierr.KeyQuota, 429, false})
	check(call{"key: budget spent (Messages API)", "anthropic", "POST", pub + "/v1/messages",
		`{"model": "economy", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}`, map[string]string{"X-Api-Key": poor}, apierr.KeyQuota, 429, false})
	// The first call at rpm 1 takes the minute's one request (the
	// provider here fails it, which does not give the request back).
	if r, err := http.DefaultClient.Do(withHeader(httpPost(pub+"/v1/chat/completions", chatBody), "Authorization", "Bearer "+slow)); err != nil {
		t.Fatal(err)
	} else {
		r.Body.Close()
	}
	check(call{"key: over rpm", "openai", "POST", pub + "/v1/chat/completions", chatBody, bearer(slow), apierr.KeyRateLimited, 429, false})
	check(call{"key: unknown", "openai", "POST", pub + "/v1/chat/completions", chatBody, bearer("wgk_" + strings.Repeat("x", 43)), apierr.Unauthorized, 401, false})

	// The admin API disabled: a second assembly without an admin token.
	cfg2 := cfg
	cfg2.AdminToken, cfg2.DatabaseURL, cfg2.LLMProvider = "", "", "simulated"
	// With a connection cap of 2: two idle connections fill the public
	// listener and a third is answered 503 over_capacity.
	cfg2.MaxConns = 2
	b := startReady(t, cfg2, slog.New(slog.DiscardHandler))
	check(call{"admin disabled", "admin", "GET", "http://" + b.OpsAddr() + "/admin/status", "", admin, apierr.AdminDisabled, 403, false})
	for range 2 {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	check(call{"over the connection cap", "api", "GET", "http://" + b.Addr() + "/healthz", "", nil, apierr.OverCapacity, 503, true})

	// Redis unreachable, keys failing closed: a third assembly whose
	// REDIS_URL is a port nothing listens on.
	cfg3 := cfg
	cfg3.DatabaseURL, cfg3.LLMProvider = "", "simulated"
	cfg3.RedisURL = "redis://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)) + "/0"
	c3 := startReady(t, cfg3, slog.New(slog.DiscardHandler))
	budgeted := createKey(t, "http://"+c3.OpsAddr(), `{"name": "budgeted", "budget_usd": 1}`).Secret
	check(call{"key: limits unavailable", "openai", "POST", "http://" + c3.Addr() + "/v1/chat/completions", chatBody, bearer(budgeted), apierr.KeyLimitsDown, 503, false})

	for _, e := range apierr.Table {
		if _, excused := notReached[e.Code]; !reached[e.Code] && !excused {
			t.Errorf("code %s is not reached through the assembly", e.Code)
		}
	}
	t.Logf("%d calls, %d of %d codes reached; not reached here: %d (%v)", len(calls)+10, len(reached), len(apierr.Table), len(notReached), fmt.Sprint(codesOf(notReached)))
}

// sendRaw writes req's head on a connection of its own (with its
// Content-Length, without its body) and reads the answer: for the calls
// the server answers before reading the request or its body (over the
// connection cap, a Content-Length over the limit), which HTTP clients
// may report as a failed write or an unsolicited response.
func sendRaw(req *http.Request) (*http.Response, error) {
	c, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), req.URL.Host)
	if req.ContentLength > 0 {
		fmt.Fprintf(&head, "Content-Length: %d\r\n", req.ContentLength)
	}
	_ = req.Header.Write(&head)
	head.WriteString("\r\n")
	_, _ = c.Write(head.Bytes()) // an early answer may come before it is all written
	res, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		c.Close()
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	c.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, err
}

func codesOf(m map[apierr.Code]string) []apierr.Code {
	var out []apierr.Code
	for k := range m {
		out = append(out, k)
	}
	return out
}

func httpPost(url, body string) *http.Request {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

func withHeader(req *http.Request, k, v string) *http.Request {
	req.Header.Set(k, v)
	return req
}
