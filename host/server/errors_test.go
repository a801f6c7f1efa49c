package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/store"
	"github.com/wingman-app/wingate/host/store/memstore"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// leakCase is an error some layer may return, the texts no answer may
// carry (the driver's, the library's, Go's) and the code it must get.
type leakCase struct {
	name   string
	err    error
	secret []string
	code   string
	status int
}

func jsonErr(v any, data string) error { return json.Unmarshal([]byte(data), v) }

func leakCases() []leakCase {
	nul := &pgconn.PgError{Severity: "ERROR", Code: "22021", Message: `invalid byte sequence for encoding "UTF8": 0x00`}
	uniq := &pgconn.PgError{Severity: "ERROR", Code: "23505", Message: `duplicate key value violates unique constraint "users_pkey"`, Detail: "Key (id)=(7) already exists."}
	fk := &pgconn.PgError{Severity: "ERROR", Code: "23503", Message: "insert or update violates foreign key", Detail: `Key (user_id)=(9) is not present in table "users".`}
	down := &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}
	var obj struct{ Lat float64 }
	synErr := jsonErr(&obj, `{"lat": 1,,}`)
	typErr := jsonErr(&obj, `{"Lat": "north"}`)
	wasmLoad := &policy.LoadError{Policy: "cache", Item: "module", Err: errors.New("invalid magic number: wasm: section 0x0b")}
	trap := &policy.CallError{Policy: "cache", Version: "abc", Err: fmt.Errorf("%w: wasm error: unreachable\nwasm stack trace:\n\tcache.decide(i32)", policy.ErrTrap)}
	return []leakCase{
		{"nul byte (pgx 22021)", fmt.Errorf("pgstore: create session: %w: %s", store.ErrInvalid, nul.Message), []string{"0x00", "UTF8", "pgstore"}, "invalid", 400},
		{"unique violation", fmt.Errorf("pgstore: create user: %w: %s", store.ErrConflict, uniq.Message), []string{"users_pkey", "duplicate key"}, "conflict", 409},
		{"foreign key", fmt.Errorf("pgstore: complete: %w: %s", store.ErrNotFound, fk.Detail), []string{"Key (user_id)", "users"}, "not_found", 404},
		{"pg down", fmt.Errorf("pgstore: list: %w: %s (%s)", store.ErrUnavailable, down.Message, down.Code), []string{"administrator", "57P01"}, "unavailable", 503},
		{"raw pg error", fmt.Errorf("pgstore: list: %w", nul), []string{"0x00", "UTF8", "22021"}, "internal", 500},
		{"no rows", fmt.Errorf("pgstore: get: %w", pgx.ErrNoRows), []string{"no rows"}, "internal", 500},
		{"context canceled", fmt.Errorf("pgstore: list: %w", context.Canceled), []string{"context canceled"}, "unavailable", 503},
		{"deadline", fmt.Errorf("chat: turn: %w", context.DeadlineExceeded), []string{"deadline exceeded"}, "unavailable", 503},
		{"json syntax", fmt.Errorf("decode: %w", synErr), []string{"invalid character", "looking for"}, "invalid_body", 400},
		{"json type", fmt.Errorf("decode: %w", typErr), []string{"cannot unmarshal", "Go struct"}, "invalid_body", 400},
		{"wasm load", wasmLoad, []string{"magic number", "section 0x0b", "policy: load"}, "internal", 500},
		{"wasm trap", trap, []string{"unreachable", "wasm stack", "cache.decide"}, "internal", 500},
		{"policy timeout", fmt.Errorf("x: %w", policy.ErrTimeout), []string{"deadline exceeded", "policy:"}, "unavailable", 503},
		{"llm provider", &llm.Error{Provider: "anthropic", Kind: llm.KindUnavailable, Status: 529, Type: "overloaded_error", Message: "Overloaded"}, []string{"overloaded", "anthropic"}, "llm_error", 502},
		{"llm bad request", fmt.Errorf("openai: %w: max_tokens is too large: 999999", llm.ErrBadRequest), []string{"max_tokens", "999999"}, "llm_error", 502},
		{"all tiers down", fmt.Errorf("%w: economy: dial tcp 10.0.0.1:443: i/o timeout", chat.ErrAllTiersDown), []string{"dial tcp", "10.0.0.1"}, "llm_unavailable", 503},
		{"rollout step", &rollout.StepError{Step: "switch", Err: fmt.Errorf("record activation: %w", down)}, []string{"administrator", "record activation"}, "rejected", 422},
		{"rollout cases", &rollout.InvalidError{Field: "cases", Reason: "want a JSON array of cases", Err: synErr}, []string{"invalid character"}, "invalid_cases", 400},
		{"rollout missing", fmt.Errorf("pgpolicy: get 9: %w: %w", rollout.ErrNotFound, pgx.ErrNoRows), []string{"no rows", "pgpolicy"}, "not_found", 404},
		{"fiber 413", fiber.NewError(413, "Request Entity Too Large: body limit 1048576 exceeded in fasthttp"), []string{"fasthttp", "1048576"}, "body_too_large", 413},
		{"fiber 400", fiber.NewError(400, "error when reading request headers: small read buffer"), []string{"small read buffer", "headers"}, "bad_request", 400},
		{"plain go error", errors.New("runtime error: index out of range [3] with length 2"), []string{"index out of range"}, "internal", 500},
	}
}

func assertNoLeak(t *testing.T, where string, body []byte, c leakCase) {
	t.Helper()
	low := strings.ToLower(string(body))
	for _, s := range append([]string{c.err.Error()}, c.secret...) {
		if strings.Contains(low, strings.ToLower(s)) {
			t.Errorf("%s: %s: body %s carries %q", c.name, where, body, s)
		}
	}
}

// TestErrorPathsLeakNothing sends each error through every surface's
// renderer, as a handler would return it: the project's JSON (/api,
// /admin, the chat's event stream) and OpenAI's shape (/v1/chat). Each
// answer has the table's code and status and none of the error's text.
func TestErrorPathsLeakNothing(t *testing.T) {
	cases := leakCases()
	srv := New(DefaultConfig(), Deps{Store: memstore.New(), Logger: slog.New(slog.DiscardHandler)})
	app := srv.App()
	caseOf := func(c *fiber.Ctx) leakCase {
		i, _ := strconv.Atoi(c.Params("i"))
		return cases[i]
	}
	app.Get("/test/api/:i", func(c *fiber.Ctx) error { return caseOf(c).err })
	app.Get("/test/admin/:i", func(c *fiber.Ctx) error { return srv.rolloutError(c, nil, caseOf(c).err) })
	app.Get("/test/openai/:i", func(c *fiber.Ctx) error { return writeOpenAIError(c, toOpenAIError(caseOf(c).err)) })
	app.Get("/test/chat/:i", func(c *fiber.Ctx) error { return srv.chatError(caseOf(c).err) })
	for i, c := range cases {
		for _, surface := range []string{"api", "admin", "openai", "chat"} {
			resp, err := app.Test(httptest.NewRequest("GET", "/test/"+surface+"/"+strconv.Itoa(i), nil), -1)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assertNoLeak(t, surface, body, c)
			if resp.StatusCode != c.status {
				t.Errorf("%s: %s: status %d, want %d (%s)", c.name, surface, resp.StatusCode, c.status, body)
			}
			var m struct {
				Error struct {
					Code    *string `json:"code"`
					Type    string  `json:"type"`
					Message string  `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &m); err != nil || m.Error.Message == "" {
				t.Errorf("%s: %s: body %s is not an error object: %v", c.name, surface, body, err)
				continue
			}
			want := c.code
			if surface == "openai" {
				_, want = apierr.New(apierr.Code(c.code)).OpenAIType()
				if m.Error.Type == "" {
					t.Errorf("%s: openai: no type in %s", c.name, body)
				}
			}
			if m.Error.Code == nil || *m.Error.Code != want {
				t.Errorf("%s: %s: code %v, want %q (%s)", c.name, surface, m.Error.Code, want, body)
			}
		}
		// The chat's in-stream error event.
		ae, _ := apiError(c.err)
		b, _ := json.Marshal(ae.JSONBody())
		assertNoLeak(t, "chat stream", b, c)
	}
}

// TestTableIsConsistent: every code is unique, has a message and a status
// of its class, and unknown codes fall back to internal.
func TestTableIsConsistent(t *testing.T) {
	seen := map[apierr.Code]bool{}
	for _, e := range apierr.Table {
		if seen[e.Code] || e.Message == "" || e.Status < 400 || e.Status > 599 {
			t.Errorf("bad entry %+v", e)
		}
		seen[e.Code] = true
	}
	if e, ok := apierr.Lookup("no_such_code"); ok || e.Code != apierr.Internal {
		t.Errorf("unknown code = %+v, %v", e, ok)
	}
	if e, ok := apierr.Lookup("invalid_lat"); !ok || e.Status != 400 {
		t.Errorf("field code = %+v, %v", e, ok)
	}
}

// TestReadyzSaysStatusOnly: a failing check's error (a driver's text)
// stays in the log; the body says unavailable and nothing else.
func TestReadyzSaysStatusOnly(t *testing.T) {
	var logs strings.Builder
	secret := `failed to connect to host=10.1.2.3 user=wingate database=prod: FATAL: password authentication failed`
	srv := New(DefaultConfig(), Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Ready: []ReadyCheck{
		{Name: "database", Required: true, Check: func(context.Context) error { return errors.New(secret) }},
		{Name: "redis", Check: func(context.Context) error { return errors.New("dial tcp 10.9.9.9:6379: connection refused") }},
	}})
	resp, err := srv.App().Test(httptest.NewRequest("GET", "/readyz", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || strings.TrimSpace(string(body)) != `{"status":"unavailable"}` {
		t.Fatalf("/readyz = %d %s, want 503 {\"status\":\"unavailable\"}", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "password authentication failed") {
		t.Fatalf("the failing check is not in the log:\n%s", logs.String())
	}
}

// TestNULByteInBodyAgainstPostgres: a NUL byte in a chat session title
// reaches PostgreSQL, which refuses it; the client gets 400 "invalid"
// without the driver's text.
func TestNULByteInBodyAgainstPostgres(t *testing.T) {
	ctx := context.Background()
	dbURL, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_server_nul")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop() })
	st, err := pgstore.Open(ctx, pgstore.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f := newChatFixture(t, nil, st, 1)
	for _, body := range []string{`{"title": "a\u0000b"}`, "{\"title\": \"a\\u0000\"}"} {
		r := f.do(t, "POST", "/api/chat/sessions", 1, body)
		low := strings.ToLower(string(r.body))
		for _, s := range []string{"0x00", "utf8", "pgstore", "sqlstate", "encoding"} {
			if strings.Contains(low, s) {
				t.Errorf("body %s carries %q", r.body, s)
			}
		}
		if r.status != 400 || apiErrCode(r.json(t)) != "invalid" {
			t.Errorf("POST %s = %d %s, want 400 invalid", body, r.status, r.body)
		}
	}
}
