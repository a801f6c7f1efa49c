package router_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/wingman-app/wingate/plugins/route/router"
	"github.com/wingman-app/wingate/sdk/abi"
)

func newRouter(t testing.TB) *router.Router {
	t.Helper()
	rt, err := router.New(router.DefaultConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestRanking checks the order the score must give to kinds of message,
// group by group: every message of a lower group scores below every
// message of a higher one.
func TestRanking(t *testing.T) {
	rt := newRouter(t)
	groups := []struct {
		name string
		msgs []string
	}{
		{"small talk", []string{"hi", "thanks a lot!", "ok", "good night", "haha"}},
		{"everyday", []string{"How do I ask my coworker to lunch?", "What should I wear to a first date?", "Give me a confidence challenge for today."}},
		{"hard", []string{
			"Write a SQL query that returns the second highest salary per department, and explain how the window function works.",
			"Calculate the probability of drawing two aces in a row from a shuffled deck without replacement, showing each step.",
		}},
	}
	prevMax := -1.0
	for _, g := range groups {
		lo, hi := 2.0, -1.0
		for _, m := range g.msgs {
			s := rt.Score(m, 0).Score
			lo, hi = min(lo, s), max(hi, s)
		}
		if lo <= prevMax {
			t.Errorf("%s: lowest score %.3f not above the previous group's highest %.3f", g.name, lo, prevMax)
		}
		prevMax = hi
	}
}

// TestTiers checks the tier rules on the scores the thresholds produce.
func TestTiers(t *testing.T) {
	cfg := router.DefaultConfig
	cfg.ChatPremiumAt = 2 // premium disabled for chat
	rt, err := router.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hard := "Write a Python function that merges two sorted linked lists in O(n) time, and explain its complexity."
	tests := []struct {
		name    string
		req     abi.RouteRequest
		want    abi.Tier
		contain string
	}{
		{"small talk", abi.RouteRequest{Message: "hello!"}, abi.TierEconomy, ""},
		{"hard chat capped at standard", abi.RouteRequest{Message: hard}, abi.TierStandard, "code"},
		{"hard assessment", abi.RouteRequest{Message: hard, Purpose: abi.PurposeAssessment}, abi.TierPremium, "assessment: "},
		{"assessment floor", abi.RouteRequest{Message: "hello!", Purpose: abi.PurposeAssessment}, abi.TierStandard, "assessment: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rt.Decide(&tt.req)
			if got.Tier != tt.want {
				t.Errorf("tier = %d, want %d (score %.3f)", got.Tier, tt.want, got.Score)
			}
			if !strings.Contains(got.Reason, tt.contain) {
				t.Errorf("reason = %q, want it to contain %q", got.Reason, tt.contain)
			}
		})
	}
}

// TestHistoryRaisesScore: the same message scores higher in a long
// conversation, and never above 1.
func TestHistoryRaisesScore(t *testing.T) {
	rt := newRouter(t)
	m := "How can I keep a conversation going when it stalls?"
	a, b := rt.Score(m, 0).Score, rt.Score(m, 20000).Score
	if !(b > a) || b > 1 {
		t.Errorf("score %.4f without history, %.4f with 20k tokens: want higher and ≤ 1", a, b)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
		check   func(router.Config) bool
	}{
		{"empty gives defaults", "", false, func(c router.Config) bool { return c == router.DefaultConfig }},
		{"null gives defaults", "null", false, func(c router.Config) bool { return c == router.DefaultConfig }},
		{"partial keeps other defaults", `{"economy_below": 0.1}`, false, func(c router.Config) bool {
			return c.EconomyBelow == 0.1 && c.ChatPremiumAt == router.DefaultConfig.ChatPremiumAt
		}},
		{"cue override", `{"cues": {"code": 1}}`, false, func(c router.Config) bool { return c.Cues.Code == 1 && c.Cues.Maths == router.DefaultConfig.Cues.Maths }},
		{"unknown field", `{"economy": 0.1}`, true, nil},
		{"out of range", `{"economy_below": -0.1}`, true, nil},
		{"premium below economy", `{"economy_below": 0.5, "chat_premium_at": 0.4}`, true, nil},
		{"bad tier", `{"assessment_min_tier": "gold"}`, true, nil},
		{"bad scale", `{"hard_scale": 0}`, true, nil},
		{"not an object", `"x"`, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := router.ParseConfig([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, router.ErrConfig) {
					t.Fatalf("err = %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config = %+v", c)
			}
		})
	}
}

// TestDecideDoesNotAllocate: the decision path is allocation-free.
func TestDecideDoesNotAllocate(t *testing.T) {
	rt := newRouter(t)
	req := abi.RouteRequest{Message: strings.Repeat("Why does the moon look larger near the horizon? ", 10)}
	if n := testing.AllocsPerRun(100, func() { rt.Decide(&req) }); n != 0 {
		t.Errorf("Decide allocates %.0f times per call", n)
	}
}

// FuzzDecide: any message (the request input of the policy) gives a score
// in [0, 1], a valid tier and a non-empty reason, without panicking.
func FuzzDecide(f *testing.F) {
	for _, s := range []string{"", "hi", "ok thanks", "A.\nB.\nC.", "x^2 + y^2 = z^2", "é'ñ'", "''''", "1.2.3,4", strings.Repeat("word ", 3000), "\xff\xfe{};`"} {
		f.Add(s, uint8(0), uint32(0))
	}
	f.Add("assess this", uint8(1), uint32(1<<31))
	rt := newRouter(f)
	f.Fuzz(func(t *testing.T, msg string, purpose uint8, hist uint32) {
		req := abi.RouteRequest{Message: msg, Purpose: abi.Purpose(purpose % 2), HistoryTokens: hist}
		d := rt.Decide(&req)
		if math.IsNaN(d.Score) || d.Score < 0 || d.Score > 1 {
			t.Fatalf("score %v out of [0, 1] for %q", d.Score, msg)
		}
		if d.Tier > abi.TierPremium || d.Reason == "" || !utf8.ValidString(d.Reason) {
			t.Fatalf("decision %+v", d)
		}
	})
}

// BenchmarkDecide measures one decision natively, for a 500-character
// message (the target is 20 µs inside WebAssembly) and for a greeting.
func BenchmarkDecide(b *testing.B) {
	rt := newRouter(b)
	msg500 := "I have a job interview next week for a product manager role and I tend to ramble when I'm nervous. " +
		"Could you help me prepare? First, list the five questions I'm most likely to be asked, then for each one " +
		"explain what the interviewer wants to hear and give me a short example answer. Finally, suggest a way to " +
		"practise so that I stop rambling, and tell me how to recover if I lose my train of thought mid-answer, please."
	for len(msg500) < 500 {
		msg500 += " " + msg500
	}
	msg500 = msg500[:500]
	for _, bc := range []struct{ name, msg string }{{"500chars", msg500}, {"greeting", "hey, how are you?"}} {
		b.Run(bc.name, func(b *testing.B) {
			req := abi.RouteRequest{Message: bc.msg}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.msg)))
			for b.Loop() {
				rt.Decide(&req)
			}
		})
	}
}

// TestConcurrentDecide hammers one Router from many goroutines (run with
// -race): decisions are deterministic and the Router is read-only.
func TestConcurrentDecide(t *testing.T) {
	rt := newRouter(t)
	msgs := []string{"hi", "How do I ask her out?", "Solve 2x + 3 = 7 and explain each step.", strings.Repeat("why ", 600)}
	want := make([]abi.RouteDecision, len(msgs))
	for i, m := range msgs {
		want[i] = rt.Decide(&abi.RouteRequest{Message: m})
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 200; n++ {
				i := (g + n) % len(msgs)
				if got := rt.Decide(&abi.RouteRequest{Message: msgs[i]}); got != want[i] {
					errs <- fmt.Sprintf("goroutine %d: %+v, want %+v", g, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// FuzzParseConfig: any configuration bytes either parse into a valid
// configuration or fail with ErrConfig, never panic.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "null", "{}", `{"economy_below": 0.3}`, `{"cues": {"code": 9}}`, `{"hard_scale": -1}`, `[`, `{"economy_below": 1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := router.ParseConfig(b)
		if err != nil {
			if !errors.Is(err, router.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if _, err := router.New(c, nil); err != nil {
			t.Fatalf("parsed config %+v rejected by New: %v", c, err)
		}
	})
}
