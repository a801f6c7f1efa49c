package app

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/auth"
)

// parseServerTiming reads a Server-Timing header into name → milliseconds.
func parseServerTiming(t *testing.T, h string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, part := range strings.Split(h, ",") {
		name, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		v, found := strings.CutPrefix(params, "dur=")
		if !ok || !found {
			t.Fatalf("Server-Timing %q: entry %q is not name;dur=ms", h, part)
		}
		ms, err := strconv.ParseFloat(v, 64)
		if err != nil || ms < 0 {
			t.Fatalf("Server-Timing %q: %q is not a duration", h, v)
		}
		out[name] = ms
	}
	return out
}

// TestGatewayServerTiming: a gateway answer from the assembly serve
// builds says where its time went. With the simulated provider taking
// 40 ms to its first token: plain, route, compress, provider-ttft (at
// least the 40 ms), provider (at least that) and total (at least that);
// streamed, the same up to the first byte (sent before the provider has
// finished). The GenAI semantic conventions' metrics count the calls,
// their tokens and the streamed one's first chunk.
func TestGatewayServerTiming(t *testing.T) {
	const first = 40 * time.Millisecond
	a := buildReady(t, func() Config {
		cfg := Defaults()
		cfg.PolicyDir, cfg.JWTSecret = policyDir(t), testSecret
		cfg.SimLatency, cfg.SimTokenLatency = first, 2*time.Millisecond
		return cfg
	}(), true)
	au, err := auth.New([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := au.Issue(7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	call := func(stream bool) (*http.Response, string) {
		body := `{"model": "auto", "stream": ` + strconv.FormatBool(stream) + `, "messages": [{"role": "user", "content": "Plan a first date at a museum."}]}`
		req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		return res, string(b)
	}
	firstMS := float64(first.Milliseconds())

	res, _ := call(false)
	t.Logf("plain: Server-Timing: %s", res.Header.Get("Server-Timing"))
	st := parseServerTiming(t, res.Header.Get("Server-Timing"))
	for _, n := range []string{"route", "compress", "provider-ttft", "provider", "total"} {
		if _, ok := st[n]; !ok {
			t.Errorf("plain answer: no %s in Server-Timing %q", n, res.Header.Get("Server-Timing"))
		}
	}
	if st["provider-ttft"] < firstMS || st["provider"] < st["provider-ttft"] || st["total"] < st["provider"] || st["total"] < st["route"]+st["compress"]+st["provider"]-0.01 {
		t.Errorf("plain answer: Server-Timing %q does not add up (first token after at least %v)", res.Header.Get("Server-Timing"), first)
	}
	if st["route"] <= 0 {
		t.Errorf("plain answer on auto: the route decision took %v ms", st["route"])
	}

	res, body := call(true)
	t.Logf("stream: Server-Timing: %s", res.Header.Get("Server-Timing"))
	st = parseServerTiming(t, res.Header.Get("Server-Timing"))
	for _, n := range []string{"route", "compress", "provider-ttft", "first-byte"} {
		if _, ok := st[n]; !ok {
			t.Errorf("stream: no %s in Server-Timing %q", n, res.Header.Get("Server-Timing"))
		}
	}
	if _, ok := st["provider"]; ok {
		t.Errorf("stream: Server-Timing %q has the provider's total, unknown at the first byte", res.Header.Get("Server-Timing"))
	}
	if st["provider-ttft"] < firstMS || st["first-byte"] < st["provider-ttft"] {
		t.Errorf("stream: Server-Timing %q does not add up", res.Header.Get("Server-Timing"))
	}
	if !strings.Contains(body, "data: [DONE]") {
		t.Errorf("stream did not end: %.200s", body)
	}

	// The GenAI conventions' client metrics.
	mres, err := http.Get("http://" + a.OpsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mres.Body.Close()
	counts := map[string]float64{}
	sc := bufio.NewScanner(mres.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, fam := range []string{"gen_ai_client_operation_duration_seconds_count", "gen_ai_client_token_usage_count", "gen_ai_client_operation_time_to_first_chunk_seconds_count"} {
			if strings.HasPrefix(line, fam+"{") && strings.Contains(line, `gen_ai_operation_name="chat"`) && strings.Contains(line, `gen_ai_provider_name="simulated"`) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				counts[fam] += v
			}
		}
	}
	if counts["gen_ai_client_operation_duration_seconds_count"] != 2 || counts["gen_ai_client_token_usage_count"] != 4 || counts["gen_ai_client_operation_time_to_first_chunk_seconds_count"] != 1 {
		t.Errorf("GenAI metrics: %v; want 2 calls, 4 token records (input and output of each), 1 first chunk (the streamed call)", counts)
	}
}
