package llm

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPriceCost(t *testing.T) {
	tiers := DefaultTiers("simulated")
	tests := []struct {
		tier string
		u    Usage
		want float64
	}{
		{TierEconomy, Usage{InputTokens: 1_000_000}, 1},
		{TierEconomy, Usage{OutputTokens: 1_000_000}, 5},
		{TierStandard, Usage{InputTokens: 1000, OutputTokens: 100}, 0.003 + 0.0015},
		{TierPremium, Usage{InputTokens: 1000, OutputTokens: 100, CacheReadTokens: 10000, CacheWriteTokens: 1000}, (1000+1000+1250)*5/1e6 + 100*25/1e6},
	}
	for _, tt := range tests {
		tr, _ := tiers.Get(tt.tier)
		got := tr.PriceAt(time.Now()).Cost(tt.u)
		if math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s %+v: cost %v, want %v", tt.tier, tt.u, got, tt.want)
		}
	}
}

func TestParseTiersAndPriceHistory(t *testing.T) {
	js := `{"tiers":[
	 {"name":"economy","model":"claude-haiku-4-5","prices":[
	   {"effective":"2026-01-01","input_per_mtok":0.5,"output_per_mtok":2.5},
	   {"effective":"2025-10-15","input_per_mtok":1,"output_per_mtok":5,"cache_read_multiplier":0.1,"cache_write_multiplier":1.25}]},
	 {"name":"standard","provider":"openai","model":"gpt-4.1","prices":[{"effective":"2025-04-14","input_per_mtok":2,"output_per_mtok":8,"cache_read_multiplier":0.25}],"context_budget_tokens":900},
	 {"name":"premium","model":"claude-opus-4-5","prices":[{"effective":"2025-11-24","input_per_mtok":5,"output_per_mtok":25}]}]}`
	ts, err := ParseTiers([]byte(js), "anthropic")
	if err != nil {
		t.Fatal(err)
	}
	eco, _ := ts.Get(TierEconomy)
	if eco.Provider != "anthropic" {
		t.Errorf("default provider not applied: %q", eco.Provider)
	}
	for _, tt := range []struct {
		at   string
		want float64
	}{{"2025-12-31", 1}, {"2026-01-01", 0.5}, {"2027-05-05", 0.5}, {"2020-01-01", 1}} {
		if got := eco.PriceAt(MustDate(tt.at).Time).InputPerMTok; got != tt.want {
			t.Errorf("price at %s = %v, want %v", tt.at, got, tt.want)
		}
	}
	std, _ := ts.ByModel("gpt-4.1")
	if std.Name != TierStandard || std.ContextBudgetTokens != 900 || std.MaxOutputTokens != 1024 {
		t.Errorf("standard = %+v", std)
	}
	if got := ts.Providers(); len(got) != 2 {
		t.Errorf("providers = %v", got)
	}
	for _, bad := range []string{
		`{"tiers":[]}`,
		`{"tiers":[{"name":"cheap","model":"x","prices":[{"effective":"2025-01-01"}]}]}`,
		`{"tiers":[{"name":"economy","model":"x","prices":[{"effective":"2025-01-01"}]}]}`,
		`{"tiers":[{"name":"economy","model":"x","prices":[{"effective":"01/01/2025"}]}]}`,
		`{"tiers":[{"name":"economy","model":"x","prices":[]}]}`,
	} {
		if _, err := ParseTiers([]byte(bad), "p"); err == nil {
			t.Errorf("ParseTiers(%s) succeeded", bad)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		h    map[string]string
		want time.Duration
	}{
		{map[string]string{"retry-after": "5"}, 5 * time.Second},
		{map[string]string{"retry-after": "0.5"}, 500 * time.Millisecond},
		{map[string]string{"retry-after-ms": "20", "retry-after": "5"}, 20 * time.Millisecond},
		{map[string]string{"retry-after": now.Add(3 * time.Second).Format(http.TimeFormat)}, 3 * time.Second},
		{map[string]string{"retry-after": "soon"}, 0},
		{map[string]string{"retry-after": "-3"}, 0},
		{nil, 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.h {
			h.Set(k, v)
		}
		if got := ParseRetryAfter(h, now); got != tt.want {
			t.Errorf("%v: got %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestErrorIs(t *testing.T) {
	e := &Error{Provider: "p", Kind: KindRateLimited, Status: 429}
	if !errors.Is(e, ErrRateLimited) || errors.Is(e, ErrUnavailable) || !e.Retryable() {
		t.Errorf("errors.Is / Retryable wrong for %v", e)
	}
	if k := AsError("p", context.Canceled).Kind; k != KindCanceled {
		t.Errorf("context error kind = %v", k)
	}
	for status, want := range map[int]Kind{429: KindRateLimited, 401: KindAuth, 403: KindAuth, 400: KindBadRequest, 404: KindBadRequest, 500: KindUnavailable, 503: KindUnavailable, 408: KindUnavailable} {
		if got := KindForStatus(status); got != want {
			t.Errorf("KindForStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestCountTokens(t *testing.T) {
	if n := CountTokens("hello world"); n != 2 {
		t.Errorf("CountTokens(hello world) = %d, want 2", n)
	}
	if n := CountTokens(""); n != 0 {
		t.Errorf("empty = %d", n)
	}
	msgs := []Message{{Role: RoleUser, Content: "hello world"}}
	if n := CountMessages("hello world", msgs); n != 2*(2+MessageOverheadTokens) {
		t.Errorf("CountMessages = %d", n)
	}
}

func TestCountTokensCached(t *testing.T) {
	long := strings.Repeat("We talked about the hiking trip with Priya in June. ", 4)
	want := count(long)
	for i := 0; i < 3; i++ {
		if got := CountTokens(long); got != want {
			t.Fatalf("call %d: %d, want %d", i, got, want)
		}
	}
	if n, ok := tokenCache.GetIfPresent(long); !ok || int(n) != want {
		t.Errorf("not cached: %d %v", n, ok)
	}
}

func BenchmarkCountTokens(b *testing.B) {
	msg := "Caroline: I went to the LGBTQ support group yesterday and it was so powerful, everyone shared their stories."
	b.Run("uncached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			count(msg)
		}
	})
	b.Run("cached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			CountTokens(msg)
		}
	})
}

func FuzzParseTiers(f *testing.F) {
	f.Add(`{"tiers":[{"name":"economy","model":"a","prices":[{"effective":"2025-01-01","input_per_mtok":1,"output_per_mtok":5}]},{"name":"standard","model":"b","prices":[{"effective":"2025-01-01"}]},{"name":"premium","model":"c","prices":[{"effective":"2025-01-01"}]}]}`)
	f.Add(`{"tiers":[{"name":"economy","prices":[{"effective":"bad"}]}]}`)
	f.Fuzz(func(t *testing.T, js string) {
		ts, err := ParseTiers([]byte(js), "simulated")
		if err != nil {
			return
		}
		if len(ts.List()) != 3 {
			t.Fatalf("%d tiers", len(ts.List()))
		}
		for _, tr := range ts.List() {
			if tr.Model == "" || tr.Provider == "" || len(tr.Prices) == 0 || tr.ContextBudgetTokens <= 0 {
				t.Fatalf("invalid tier accepted: %+v", tr)
			}
			if c := tr.PriceAt(time.Now()).Cost(Usage{InputTokens: 1, OutputTokens: 1}); c < 0 {
				t.Fatalf("negative cost %v", c)
			}
		}
	})
}
