package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	anthropicopt "github.com/anthropics/anthropic-sdk-go/v2/option"
	openaisdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/wingman-app/wingate/host/llm"
)

// issuedKey is a key as the admin API returned it at creation.
type issuedKey struct {
	ID     string
	Secret string
}

// createKey issues a virtual key through the admin API of ops.
func createKey(tb testing.TB, ops, body string) issuedKey {
	tb.Helper()
	res := call(tb, "POST", ops+"/admin/keys", body, "Authorization", "Bearer "+testAdminToken, "Content-Type", "application/json")
	if res.status != http.StatusCreated {
		tb.Fatalf("create key %s: %d %s", body, res.status, res.body)
	}
	var out struct {
		Key    struct{ ID string }
		Secret string
	}
	if err := json.Unmarshal([]byte(res.body), &out); err != nil || out.Key.ID == "" || !strings.HasPrefix(out.Secret, "wgk_") {
		tb.Fatalf("create key: %s (%v)", res.body, err)
	}
	return issuedKey{out.Key.ID, out.Secret}
}

// keySpend reads a key's spend of the current period through the admin API.
func keySpend(tb testing.TB, ops, id string) (requests, partial int64, micros int64) {
	tb.Helper()
	res := call(tb, "GET", ops+"/admin/keys/"+id+"/spend", "", "Authorization", "Bearer "+testAdminToken)
	if res.status != http.StatusOK {
		tb.Fatalf("spend of %s: %d %s", id, res.status, res.body)
	}
	var out struct {
		Spend struct {
			Requests        int64 `json:"requests"`
			PartialRequests int64 `json:"partial_requests"`
			SpendMicros     int64 `json:"spend_micros"`
		}
	}
	if err := json.Unmarshal([]byte(res.body), &out); err != nil {
		tb.Fatal(err)
	}
	return out.Spend.Requests, out.Spend.PartialRequests, out.Spend.SpendMicros
}

// anthropicRefused checks that Anthropic's SDK, with secret as its key,
// gets a typed error of status and type for a message.
func anthropicRefused(t *testing.T, base, secret string, status int, typ string) {
	t.Helper()
	msg := anthropic.NewClient(anthropicopt.WithBaseURL(base+"/"), anthropicopt.WithAPIKey(secret), anthropicopt.WithMaxRetries(0))
	_, err := msg.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "economy", MaxTokens: 40,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != status || !strings.Contains(ae.RawJSON(), typ) {
		t.Errorf("Anthropic SDK: %v, want %d %s", err, status, typ)
	}
}

func openAIKeyClient(base, secret string) openaisdk.Client {
	return openaisdk.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(secret), option.WithMaxRetries(0))
}

// sdkStatus returns the OpenAI SDK's typed error's status, code and type.
func sdkStatus(t *testing.T, err error) (int, string, string) {
	t.Helper()
	var e *openaisdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *openai.Error", err)
	}
	return e.StatusCode, e.Code, e.Type
}

// TestVirtualKeysWithSDKs: keys issued through the admin API, used by
// OpenAI's and Anthropic's Go SDKs against the assembly serve builds: a
// call is charged to its key's ledger at the tier's price, a model the
// key may not call, a spent budget, a rate limit, a rotation with grace
// and a revocation each come back as the SDK's typed error.
func TestVirtualKeysWithSDKs(t *testing.T) {
	a, base := listening(t, nil, nil)
	ops := opsBase(a)
	ctx := context.Background()
	ask := openaisdk.ChatCompletionNewParams{Model: "economy", MaxTokens: openaisdk.Int(40),
		Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("Give me one opener for a climbing gym.")}}

	k := createKey(t, ops, `{"name": "coach-web", "models": ["economy", "auto"], "budget_usd": 5, "budget_period": "day", "metadata": {"team": "web"}}`)
	client := openAIKeyClient(base, k.Secret)

	var wantMicros int64
	eco := llm.DefaultTiers("simulated")
	economy, _ := eco.Get(llm.TierEconomy)
	for range 3 {
		resp, err := client.Chat.Completions.New(ctx, ask)
		if err != nil {
			t.Fatal(err)
		}
		cost := economy.PriceAt(time.Now()).Cost(llm.Usage{InputTokens: int(resp.Usage.PromptTokens), OutputTokens: int(resp.Usage.CompletionTokens)})
		wantMicros += int64(math.Round(cost * 1e6))
	}
	stream := client.Chat.Completions.NewStreaming(ctx, ask)
	chunks := 0
	for stream.Next() {
		chunks++
	}
	if err := stream.Err(); err != nil || chunks == 0 {
		t.Fatalf("stream with a key: %d chunks, %v", chunks, err)
	}
	if n, _, micros := keySpend(t, ops, k.ID); n != 4 || micros < wantMicros {
		t.Errorf("spend: %d requests, %d micro-dollars; want 4 and at least the three plain calls' %d", n, micros, wantMicros)
	}

	t.Run("a model the key may not call", func(t *testing.T) {
		p := ask
		p.Model = "premium"
		_, err := client.Chat.Completions.New(ctx, p)
		if st, code, _ := sdkStatus(t, err); st != 403 || code != "model_not_allowed" {
			t.Errorf("premium on an economy key: %d %s", st, code)
		}
	})

	t.Run("a spent budget", func(t *testing.T) {
		poor := createKey(t, ops, `{"name": "poor", "budget_usd": 0.000001}`)
		pc := openAIKeyClient(base, poor.Secret)
		_, err := pc.Chat.Completions.New(ctx, ask)
		st, code, typ := sdkStatus(t, err)
		if st != 429 || code != "insufficient_quota" || typ != "insufficient_quota" {
			t.Errorf("spent budget: %d %s %s", st, code, typ)
		}
		anthropicRefused(t, base, poor.Secret, 429, "rate_limit_error")
	})

	t.Run("requests per minute", func(t *testing.T) {
		slow := createKey(t, ops, `{"name": "slow", "rpm": 2}`)
		c := openAIKeyClient(base, slow.Secret)
		var last error
		for range 3 {
			_, last = c.Chat.Completions.New(ctx, ask)
		}
		st, code, _ := sdkStatus(t, last)
		var e *openaisdk.Error
		errors.As(last, &e)
		ra, _ := strconv.Atoi(e.Response.Header.Get("Retry-After"))
		if st != 429 || code != "rate_limit_exceeded" || ra < 1 || ra > 60 {
			t.Errorf("third call at rpm 2: %d %s, Retry-After %q", st, code, e.Response.Header.Get("Retry-After"))
		}
	})

	t.Run("rotation with grace, then revocation", func(t *testing.T) {
		r := call(t, "POST", ops+"/admin/keys/"+k.ID+"/rotate?grace=1h", "", "Authorization", "Bearer "+testAdminToken)
		var rot struct{ Secret string }
		if r.status != 200 || json.Unmarshal([]byte(r.body), &rot) != nil || rot.Secret == k.Secret {
			t.Fatalf("rotate: %d %s", r.status, r.body)
		}
		for name, sec := range map[string]string{"old": k.Secret, "new": rot.Secret} {
			c := openAIKeyClient(base, sec)
			if _, err := c.Chat.Completions.New(ctx, ask); err != nil {
				t.Errorf("%s secret within the grace: %v", name, err)
			}
		}
		if r := call(t, "POST", ops+"/admin/keys/"+k.ID+"/revoke", "", "Authorization", "Bearer "+testAdminToken); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		rc := openAIKeyClient(base, rot.Secret)
		_, err := rc.Chat.Completions.New(ctx, ask)
		if st, code, typ := sdkStatus(t, err); st != 401 || code != "invalid_api_key" || typ != "authentication_error" {
			t.Errorf("revoked key: %d %s %s", st, code, typ)
		}
		anthropicRefused(t, base, rot.Secret, 401, "authentication_error")
		uc := openAIKeyClient(base, "wgk_"+strings.Repeat("A", 43))
		if _, err := uc.Chat.Completions.New(ctx, ask); err == nil {
			t.Error("an unknown key was accepted")
		}
	})

	t.Run("Anthropic SDK with a key", func(t *testing.T) {
		ak := createKey(t, ops, `{"name": "claude-code", "budget_usd": 1}`)
		msg := anthropic.NewClient(anthropicopt.WithBaseURL(base+"/"), anthropicopt.WithAPIKey(ak.Secret), anthropicopt.WithMaxRetries(0))
		m, err := msg.Messages.New(ctx, anthropic.MessageNewParams{Model: "standard", MaxTokens: 60,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("One tip for a first date?"))}})
		if err != nil {
			t.Fatal(err)
		}
		standard, _ := eco.Get(llm.TierStandard)
		want := int64(math.Round(standard.PriceAt(time.Now()).Cost(llm.Usage{InputTokens: int(m.Usage.InputTokens), OutputTokens: int(m.Usage.OutputTokens)}) * 1e6))
		if n, _, micros := keySpend(t, ops, ak.ID); n != 1 || micros != want {
			t.Errorf("ledger: %d requests, %d micro-dollars; want 1 and %d", n, micros, want)
		}
	})
}

// TestKeyAdminCeilings sends the admin API key bodies past every
// documented ceiling: each is refused 400 naming the field, nothing is
// created, and a rotation's grace over 168 h is refused.
func TestKeyAdminCeilings(t *testing.T) {
	a, _ := listening(t, nil, nil)
	ops := opsBase(a)
	admin := []string{"Authorization", "Bearer " + testAdminToken, "Content-Type", "application/json"}
	models := make([]string, 65)
	for i := range models {
		models[i] = fmt.Sprintf("%q", fmt.Sprint("m", i))
	}
	for field, body := range map[string]string{
		"name":          `{"name": "` + strings.Repeat("n", 101) + `"}`,
		"models":        `{"name": "x", "models": [` + strings.Join(models, ",") + `]}`,
		"model name":    `{"name": "x", "models": ["` + strings.Repeat("m", 129) + `"]}`,
		"rpm":           `{"name": "x", "rpm": 1000001}`,
		"tpm":           `{"name": "x", "tpm": -1}`,
		"budget_usd":    `{"name": "x", "budget_usd": 1000001}`,
		"budget_period": `{"name": "x", "budget_period": "week"}`,
		"metadata":      `{"name": "x", "metadata": {"k": "` + strings.Repeat("v", 4100) + `"}}`,
		"expires_in":    `{"name": "x", "expires_in": "87601h"}`,
	} {
		r := call(t, "POST", ops+"/admin/keys", body, admin...)
		want := strings.Fields(field)[0]
		if want == "model" {
			want = "models"
		}
		if r.status != 400 || !strings.Contains(r.body, want) {
			t.Errorf("%s past its ceiling: %d %s", field, r.status, r.body)
		}
	}
	if r := call(t, "GET", ops+"/admin/keys", "", admin...); !strings.Contains(r.body, `"keys":[]`) {
		t.Errorf("a refused body created a key: %s", r.body)
	}
	k := createKey(t, ops, `{"name": "rot"}`)
	if r := call(t, "POST", ops+"/admin/keys/"+k.ID+"/rotate?grace=169h", "", admin...); r.status != 400 || !strings.Contains(r.body, "grace") {
		t.Errorf("grace 169h: %d %s", r.status, r.body)
	}
}
