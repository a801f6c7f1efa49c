package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	openaisdk "github.com/openai/openai-go/v3"

	"github.com/wingman-app/wingate/host/internal/testkit"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// fakeUsage is what the fake provider reports for every call: the test
// sets the input to the gateway's own count of its message, so that a
// reservation (counted input, max_tokens output) equals the charge.
type fakeUsage struct{ in, out int }

// fakeOpenAI is an OpenAI-compatible provider answering every call with
// fixed usage after delay. A stream whose last message contains "BREAK"
// sends one chunk and then drops the connection.
func fakeOpenAI(t *testing.T, u fakeUsage, delay time.Duration) (string, *atomic.Int64) {
	t.Helper()
	calls := &atomic.Int64{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req struct {
			Model    string `json:"model"`
			Stream   bool   `json:"stream"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			http.Error(w, `{"error":{"message":"bad request","type":"invalid_request_error"}}`, 400)
			return
		}
		time.Sleep(delay)
		usage := map[string]int{"prompt_tokens": u.in, "completion_tokens": u.out, "total_tokens": u.in + u.out}
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"id": "c1", "object": "chat.completion", "created": 1, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": "Say hello first."}, "finish_reason": "stop"}},
				"usage":   usage})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
		}
		delta := func(text string, finish any) map[string]any {
			return map[string]any{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": text}, "finish_reason": finish}}}
		}
		chunk(delta("Say hello first, then ask", nil))
		if last := req.Messages[len(req.Messages)-1].Content; strings.Contains(last, "BREAK") {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		chunk(delta(" about the route.", "stop"))
		chunk(map[string]any{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": req.Model, "choices": []any{}, "usage": usage})
		io.WriteString(w, "data: [DONE]\n\n")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/v1", calls
}

// keyFleet is n instances built as serve builds them, sharing one
// PostgreSQL database, a private redis-server and the fake provider.
type keyFleet struct {
	apps  []*App
	bases []string
	redis *testkit.Redis
}

func startKeyFleet(t *testing.T, n int, providerURL, redisDown string) *keyFleet {
	t.Helper()
	dbURL, drop, err := pgstore.CreateTestDatabase(context.Background(), "wingate_keys")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drop() })
	f := &keyFleet{redis: testkit.StartRedis(t)}
	for range n {
		a, base := listening(t, nil, func(c *Config) {
			c.DatabaseURL, c.RedisURL = dbURL, f.redis.URL()
			c.LLMProvider, c.OpenAIBaseURL, c.OpenAIAPIKey = "openai", providerURL, "test-key"
			c.KeysRedisDown, c.KeysReplicas = redisDown, n
			c.LLMMaxIdleConns = 512
		})
		f.apps = append(f.apps, a)
		f.bases = append(f.bases, base)
	}
	return f
}

// gatewayResult is one call's outcome.
type gatewayResult struct {
	status int
	code   string
	usage  llm.Usage
}

// callGateway posts one chat completion with the key to base.
func callGateway(client *http.Client, base, secret, model, text string, maxTokens int) gatewayResult {
	body := fmt.Sprintf(`{"model": %q, "max_tokens": %d, "messages": [{"role": "user", "content": %q}]}`, model, maxTokens, text)
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return gatewayResult{status: -1, code: err.Error()}
	}
	defer res.Body.Close()
	var out struct {
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
		Error struct{ Code string }
	}
	json.NewDecoder(res.Body).Decode(&out)
	return gatewayResult{res.StatusCode, out.Error.Code, llm.Usage{InputTokens: out.Usage.PromptTokens, OutputTokens: out.Usage.CompletionTokens}}
}

// fleetSpend is the key's ledger after every instance flushed its
// pending rows (a spend read flushes the instance's own).
func (f *keyFleet) spend(t *testing.T, id string) (requests, micros int64) {
	for _, a := range f.apps {
		requests, _, micros = keySpend(t, opsBase(a), id)
	}
	return requests, micros
}

// budgetRun fires calls over the fleet's instances, wave by wave (each
// wave's calls at once), running between after each wave; it returns the
// accepted calls, the refusals by code and the accepted calls' cost in
// micro-dollars from their usage.
func (f *keyFleet) budgetRun(t *testing.T, secret, model, text string, maxTokens int, waves []int, between func(wave int)) (int, map[string]int, int64) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 400, MaxConnsPerHost: 0}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	tier, _ := llm.DefaultTiers("openai").ByModel(model)
	price := tier.PriceAt(time.Now())
	var mu sync.Mutex
	accepted, refused, cost := 0, map[string]int{}, int64(0)
	n := 0
	for w, size := range waves {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range size {
			base := f.bases[n%len(f.bases)]
			n++
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := callGateway(client, base, secret, model, text, maxTokens)
				mu.Lock()
				defer mu.Unlock()
				if r.status == 200 {
					accepted++
					cost += int64(keysMicros(price.Cost(r.usage)))
					return
				}
				refused[fmt.Sprintf("%d %s", r.status, r.code)]++
			}()
		}
		close(start)
		wg.Wait()
		if between != nil {
			between(w)
		}
	}
	return accepted, refused, cost
}

func keysMicros(usd float64) int64 { return int64(usd*1e6 + 0.5) }

// TestKeyBudgetAcrossInstances: three instances sharing PostgreSQL and
// Redis, 300 concurrent calls spread over them on one key whose budget
// covers 50 (the provider's usage per call fixed): between 47 and 53 are
// accepted, the rest refused as insufficient_quota, and the ledger's
// spend equals the accepted calls' usage at the tier's price exactly.
// Then the same with Redis killed mid-run, in each mode.
func TestKeyBudgetAcrossInstances(t *testing.T) {
	const model, text, maxTokens = "claude-haiku-4-5", "Budget check: one opener for a bookshop, please.", 20
	in := llm.CountMessages("", []llm.Message{{Role: llm.RoleUser, Content: text}})
	tier, _ := llm.DefaultTiers("openai").ByModel(model)
	perCall := keysMicros(tier.PriceAt(time.Now()).Cost(llm.Usage{InputTokens: in, OutputTokens: maxTokens}))
	budget := fmt.Sprintf("%.6f", float64(50*perCall)/1e6)
	providerURL, _ := fakeOpenAI(t, fakeUsage{in, maxTokens}, 30*time.Millisecond)
	check := func(t *testing.T, f *keyFleet, id string, accepted int, cost int64) {
		t.Helper()
		requests, micros := f.spend(t, id)
		if requests != int64(accepted) || micros != cost {
			t.Errorf("ledger: %d requests, %d micro-dollars; the responses: %d calls, %d micro-dollars", requests, micros, accepted, cost)
		}
		if micros > 50*perCall {
			t.Errorf("spent %d micro-dollars of a %d budget", micros, 50*perCall)
		}
	}

	t.Run("redis up", func(t *testing.T) {
		f := startKeyFleet(t, 3, providerURL, "closed")
		k := createKey(t, opsBase(f.apps[0]), `{"name": "fleet", "budget_usd": `+budget+`}`)
		accepted, refused, cost := f.budgetRun(t, k.Secret, model, text, maxTokens, []int{300}, nil)
		t.Logf("300 calls at once over 3 instances, budget for 50: %d accepted, refused %v", accepted, refused)
		if accepted < 47 || accepted > 53 || refused["429 insufficient_quota"] != 300-accepted {
			t.Errorf("%d accepted (want 47 to 53), refused %v", accepted, refused)
		}
		check(t, f, k.ID, accepted, cost)
	})

	// Redis killed after 24 calls: failing closed, the rest are refused;
	// with local shares of three, the instances together stay within the
	// budget and one reservation each.
	for _, mode := range []string{"closed", "local"} {
		t.Run("redis killed, "+mode, func(t *testing.T) {
			f := startKeyFleet(t, 3, providerURL, mode)
			k := createKey(t, opsBase(f.apps[0]), `{"name": "fleet-`+mode+`", "budget_usd": `+budget+`}`)
			accepted, refused, cost := f.budgetRun(t, k.Secret, model, text, maxTokens, []int{24, 276}, func(w int) {
				if w == 0 {
					f.redis.Kill()
				}
			})
			t.Logf("Redis killed after 24 calls, %s: %d accepted, refused %v", mode, accepted, refused)
			switch {
			case mode == "closed" && (accepted != 24 || refused["503 limits_unavailable"] != 276):
				t.Errorf("%d accepted (want the 24 before the kill), refused %v", accepted, refused)
			case mode == "local" && (accepted < 47 || accepted > 53):
				t.Errorf("%d accepted (want 47 to 53), refused %v", accepted, refused)
			}
			requests, micros := f.spend(t, k.ID)
			if requests != int64(accepted) || micros != cost {
				t.Errorf("ledger: %d requests, %d micro-dollars; the responses: %d calls, %d micro-dollars", requests, micros, accepted, cost)
			}
			if micros > 53*perCall {
				t.Errorf("spent %d micro-dollars, over the documented bound (budget %d + one reservation per instance)", micros, 50*perCall)
			}
		})
	}
}

// TestStreamBreakBilledPartially: a provider that fails after the first
// chunk of a keyed stream: no retry (one provider call), a terminal error
// event after the chunk, and the partial usage billed and marked so.
func TestStreamBreakBilledPartially(t *testing.T) {
	providerURL, calls := fakeOpenAI(t, fakeUsage{10, 10}, 0)
	f := startKeyFleet(t, 1, providerURL, "closed")
	k := createKey(t, opsBase(f.apps[0]), `{"name": "stream", "budget_usd": 1}`)
	const text = "BREAK the stream after one chunk, please."
	req, _ := http.NewRequest("POST", f.bases[0]+"/v1/chat/completions", strings.NewReader(
		`{"model": "economy", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "`+text+`"}]}`))
	req.Header.Set("Authorization", "Bearer "+k.Secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var events []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, line)
		}
	}
	if res.StatusCode != 200 || len(events) != 3 || !strings.Contains(events[0], "Say hello first") ||
		!strings.Contains(events[1], `"error"`) || events[2] != "[DONE]" {
		t.Fatalf("%d, events %q", res.StatusCode, events)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the provider was called %d times: a stream that had started was retried", n)
	}
	res2 := call(t, "GET", opsBase(f.apps[0])+"/admin/keys/"+k.ID+"/spend", "", "Authorization", "Bearer "+testAdminToken)
	var sp struct {
		Spend struct {
			Requests, PartialRequests, InputTokens, OutputTokens, SpendMicros int64
		}
	}
	b := strings.NewReplacer(`"partial_requests"`, `"PartialRequests"`, `"input_tokens"`, `"InputTokens"`,
		`"output_tokens"`, `"OutputTokens"`, `"spend_micros"`, `"SpendMicros"`).Replace(res2.body)
	if err := json.Unmarshal([]byte(b), &sp); err != nil {
		t.Fatal(err)
	}
	wantOut := int64(llm.CountTokens("Say hello first, then ask"))
	if sp.Spend.Requests != 1 || sp.Spend.PartialRequests != 1 || sp.Spend.OutputTokens != wantOut || sp.Spend.InputTokens == 0 || sp.Spend.SpendMicros == 0 {
		t.Errorf("ledger %+v: want one partial request with %d output tokens, its input, a cost", sp.Spend, wantOut)
	}
	// The SDK sees the chunk, then the error.
	sdk := openAIKeyClient(f.bases[0], k.Secret)
	st := sdk.Chat.Completions.NewStreaming(context.Background(), openaisdk.ChatCompletionNewParams{Model: "economy",
		Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage(text)}})
	got := ""
	for st.Next() {
		for _, c := range st.Current().Choices {
			got += c.Delta.Content
		}
	}
	if st.Err() == nil || got != "Say hello first, then ask" {
		t.Errorf("SDK stream: text %q, err %v; want the chunk, then an error", got, st.Err())
	}
}
