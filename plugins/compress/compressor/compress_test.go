package compressor_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/plugins/compress/compressor"
	"github.com/wingman-app/wingate/plugins/compress/internal/evaldata"
	"github.com/wingman-app/wingate/sdk/abi"
)

func newDefault(t testing.TB) *compressor.Compressor {
	t.Helper()
	c, err := compressor.New(compressor.Default())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func msg(id string, role abi.Role, text string) abi.Message {
	return abi.Message{ID: id, Role: role, Text: text, Tokens: uint32(len(text)/4 + 1)}
}

// history returns n filler turns with a few facts placed at given indexes.
func history(n int, facts map[int]string) []abi.Message {
	filler := []string{
		"Alex: How was your day?", "Sam: Pretty quiet, I read for a while.",
		"Alex: Did you get any sleep last night?", "Sam: A bit, thanks for asking.",
		"Alex: The weather is nice today.", "Sam: Yes, finally some sun.",
	}
	var out []abi.Message
	for i := 0; i < n; i++ {
		text, ok := facts[i]
		if !ok {
			text = filler[i%len(filler)]
		}
		role := abi.RoleUser
		if i%2 == 1 {
			role = abi.RoleAssistant
		}
		out = append(out, msg(fmt.Sprintf("m%d", i), role, text))
	}
	return out
}

// checkInvariants asserts what every decision must satisfy.
func checkInvariants(t *testing.T, req *abi.CompressRequest, d abi.CompressDecision) {
	t.Helper()
	var used int64
	for j, k := range d.Keep {
		if int(k) >= len(req.Messages) {
			t.Fatalf("keep[%d] = %d out of range (%d messages)", j, k, len(req.Messages))
		}
		if j > 0 && k <= d.Keep[j-1] {
			t.Fatalf("keep not strictly ascending: %v", d.Keep)
		}
		used += int64(req.Messages[k].Tokens)
	}
	if int64(d.Tokens) < used {
		t.Fatalf("tokens %d below the kept messages' %d", d.Tokens, used)
	}
	if d.Tokens > req.BudgetTokens {
		t.Fatalf("tokens %d over budget %d", d.Tokens, req.BudgetTokens)
	}
	if d.Summary == "" && int64(d.Tokens) != used {
		t.Fatalf("no summary but tokens %d != kept %d", d.Tokens, used)
	}
}

func TestCompress(t *testing.T) {
	c := newDefault(t)
	sys := msg("sys", abi.RoleSystem, "You are a coach. Keep answers short.")
	hist := append([]abi.Message{sys}, history(200, map[int]string{
		40: "Sam: My brother Tom moved to Denver on 12 May 2024 for a nursing job.",
		41: "Alex: Denver is lovely, tell Tom congrats!",
		90: "Alex: What instrument did you pick up this year?",
		91: "Sam: The cello, I practise 20 minutes each morning.",
	})...)
	total := uint32(0)
	for _, m := range hist {
		total += m.Tokens
	}
	tests := []struct {
		name     string
		query    string
		budget   uint32
		mustKeep []string
		summary  string // a word the summary must hold; "-" for no summary
	}{
		{"fact by name and place", "When did Tom move to Denver?", total / 10, []string{"sys", "m40", "m199"}, ""},
		{"answer after the question", "Which instrument does Sam play?", total / 10, []string{"sys", "m90", "m91"}, "Denver"},
		{"category expands to members", "What instruments has Sam learned?", total / 10, []string{"m91"}, "Denver"},
		{"everything fits", "anything", total, nil, "-"},
		{"budget zero", "When did Tom move?", 0, nil, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &abi.CompressRequest{Messages: hist, Query: tt.query, BudgetTokens: tt.budget}
			d := c.Compress(req)
			checkInvariants(t, req, d)
			kept := map[string]bool{}
			for _, k := range d.Keep {
				kept[hist[k].ID] = true
			}
			for _, id := range tt.mustKeep {
				if !kept[id] {
					t.Errorf("%s not kept (kept %d messages)", id, len(d.Keep))
				}
			}
			switch {
			case tt.summary == "-" && d.Summary != "":
				t.Errorf("summary = %q, want none", d.Summary)
			case tt.summary != "" && tt.summary != "-" && !strings.Contains(d.Summary, tt.summary):
				t.Errorf("summary = %q, want it to hold %q", d.Summary, tt.summary)
			}
			if tt.budget == total && len(d.Keep) != len(hist) {
				t.Errorf("kept %d of %d messages within a budget that holds all", len(d.Keep), len(hist))
			}
		})
	}
}

// TestNothingRelevantFillsRecent checks that a query matching nothing
// spends the budget on the most recent messages rather than leaving it.
func TestNothingRelevantFillsRecent(t *testing.T) {
	c := newDefault(t)
	hist := history(200, nil)
	var total uint32
	for _, m := range hist {
		total += m.Tokens
	}
	req := &abi.CompressRequest{Messages: hist, Query: "Hmm?", BudgetTokens: total / 5}
	d := c.Compress(req)
	checkInvariants(t, req, d)
	var kept uint32
	for j, k := range d.Keep {
		kept += hist[k].Tokens
		if want := uint32(len(hist) - len(d.Keep) + j); k != want {
			t.Fatalf("keep = %v, want the most recent messages", d.Keep)
		}
	}
	if kept < req.BudgetTokens*8/10 {
		t.Errorf("kept %d tokens of a %d budget", kept, req.BudgetTokens)
	}
}

func TestSummaryKeepsFacts(t *testing.T) {
	cfg := compressor.Default()
	cfg.SummaryFraction = 0.2
	c, err := compressor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hist := history(300, map[int]string{
		20:  "Sam: We adopted a dog named Pepper on 3 March, she is 2 years old.",
		150: "Alex: I ran the Boston marathon in 3 hours 41 minutes last April.",
	})
	req := &abi.CompressRequest{Messages: hist, Query: "Any advice for the interview?", BudgetTokens: 1500}
	d := c.Compress(req)
	checkInvariants(t, req, d)
	for _, want := range []string{"Pepper", "Boston"} {
		if !strings.Contains(d.Summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, d.Summary)
		}
	}
	for _, line := range strings.Split(d.Summary, "\n") {
		if !strings.HasPrefix(line, "Alex: ") && !strings.HasPrefix(line, "Sam: ") {
			t.Errorf("summary line %q does not name its speaker", line)
		}
	}
}

func TestPinnedSystemOverBudget(t *testing.T) {
	c := newDefault(t)
	hist := []abi.Message{
		{ID: "s1", Role: abi.RoleSystem, Text: "rules", Tokens: 50},
		{ID: "s2", Role: abi.RoleSystem, Text: "more rules", Tokens: 80},
		{ID: "u", Role: abi.RoleUser, Text: "hi", Tokens: 5},
	}
	req := &abi.CompressRequest{Messages: hist, Query: "hi", BudgetTokens: 60}
	d := c.Compress(req)
	checkInvariants(t, req, d)
	if len(d.Keep) == 0 || d.Keep[0] != 0 {
		t.Errorf("keep = %v, want the first system message pinned", d.Keep)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
		check   func(compressor.Config) bool
	}{
		{"empty is default", "", false, func(c compressor.Config) bool { return c.K1 == compressor.Default().K1 }},
		{"null is default", "null", false, func(c compressor.Config) bool { return c.B == compressor.Default().B }},
		{"overlay keeps the rest", `{"k1": 2}`, false, func(c compressor.Config) bool {
			return c.K1 == 2 && c.B == compressor.Default().B
		}},
		{"synonyms", `{"synonyms": {"coach": ["mentor"]}}`, false, func(c compressor.Config) bool { return len(c.Synonyms) == 1 }},
		{"fraction out of range", `{"recent_fraction": 1.5}`, true, nil},
		{"negative", `{"k1": -1}`, true, nil},
		{"safety below one", `{"token_safety": 0.5}`, true, nil},
		{"wrong type", `{"k1": "high"}`, true, nil},
		{"not an object", `[]`, true, nil},
		{"span too wide", `{"neighbor_span": 99}`, true, nil},
		{"unknown field", `{"k_1": 1.2}`, true, nil},
		{"trailing data", `{"k1": 1.2} {}`, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := compressor.ParseConfig([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, compressor.ErrConfig) {
				t.Errorf("err = %v, want it to wrap ErrConfig", err)
			}
			if tt.check != nil && !tt.check(got) {
				t.Errorf("config %+v fails the check", got)
			}
		})
	}
}

// FuzzParseConfig feeds arbitrary configuration bytes (they come from the
// host at init): no panic, and a config that parses builds a compressor.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"k1": 1.5, "b": 0.5, "synonyms": {"pet": ["dog"]}}`))
	f.Add([]byte(`{"neighbor_span": 3, "prf_docs": 0}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"recent_fraction": NaN}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := compressor.ParseConfig(b)
		if err != nil {
			return
		}
		if _, err := compressor.New(cfg); err != nil {
			t.Fatalf("ParseConfig accepted a config New rejects: %v", err)
		}
	})
}

// FuzzCompress decides on arbitrary requests decoded from the ABI's binary
// form, as the guest does, and checks the decision's invariants.
func FuzzCompress(f *testing.F) {
	seed := &abi.CompressRequest{Messages: history(12, map[int]string{3: "Sam: I'm 30 today!"}), Query: "How old is Sam?", BudgetTokens: 40}
	f.Add(abi.AppendCompressRequest(nil, seed))
	f.Add(abi.AppendCompressRequest(nil, &abi.CompressRequest{Query: "x", BudgetTokens: 1}))
	odd := &abi.CompressRequest{Messages: []abi.Message{
		{ID: "a", Text: "Name: Ünïcödé ’quotes’ it’s 2024!!! ???", Tokens: 0},
		{ID: "b", Role: abi.RoleSystem, Text: ": : :", Tokens: 4294967295},
		{ID: "c", Text: "A: b", Tokens: 2},
	}, Query: "When? 2024 it’s Ünïcödé", BudgetTokens: 4294967295}
	f.Add(abi.AppendCompressRequest(nil, odd))
	c := newDefault(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req abi.CompressRequest
		if err := abi.DecodeCompressRequest(b, &req); err != nil {
			return
		}
		d := c.Compress(&req)
		checkInvariants(t, &req, d)
	})
}

// TestMemoSameDecisions checks that remembering message analyses between
// decisions changes nothing but the speed, also with decisions running
// concurrently on one Compressor and histories growing as a chat's does.
func TestMemoSameDecisions(t *testing.T) {
	off := compressor.Default()
	off.MemoMessages = 0
	cold, err := compressor.New(off)
	if err != nil {
		t.Fatal(err)
	}
	on := compressor.Default()
	on.MemoMessages = 50 // small, so the memo also empties while in use
	warm, err := compressor.New(on)
	if err != nil {
		t.Fatal(err)
	}
	msgs, queries := evaldata.Synthetic(120)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 60; n <= len(msgs); n += 7 {
				req := &abi.CompressRequest{Messages: msgs[:n], Query: queries[(n+g)%len(queries)], BudgetTokens: 300}
				want := cold.Compress(req)
				got := warm.Compress(req)
				if !slices.Equal(got.Keep, want.Keep) || got.Summary != want.Summary || got.Tokens != want.Tokens {
					t.Errorf("history of %d: memo changes the decision: keep %v vs %v", n, got.Keep, want.Keep)
					return
				}
			}
		}()
	}
	wg.Wait()
}
