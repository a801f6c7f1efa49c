package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// Tier names, cheapest first.
const (
	TierEconomy  = "economy"
	TierStandard = "standard"
	TierPremium  = "premium"
)

// TierNames lists the tiers from cheapest to dearest.
var TierNames = [...]string{TierEconomy, TierStandard, TierPremium}

// Price is a model's price list from a date on, in US dollars per million
// tokens. Cached input is priced as a multiple of the input price.
type Price struct {
	// Effective is the first day the price applies (YYYY-MM-DD in JSON).
	Effective Date `json:"effective"`
	// InputPerMTok and OutputPerMTok are dollars per million tokens.
	InputPerMTok  float64 `json:"input_per_mtok"`
	OutputPerMTok float64 `json:"output_per_mtok"`
	// CacheReadMultiplier prices tokens read from the prompt cache
	// (Anthropic: 0.1); CacheWriteMultiplier prices tokens written to it
	// (Anthropic, 5-minute cache: 1.25).
	CacheReadMultiplier  float64 `json:"cache_read_multiplier"`
	CacheWriteMultiplier float64 `json:"cache_write_multiplier"`
}

// Cost returns the dollars u costs at p.
func (p Price) Cost(u Usage) float64 {
	in := float64(u.InputTokens) +
		float64(u.CacheReadTokens)*p.CacheReadMultiplier +
		float64(u.CacheWriteTokens)*p.CacheWriteMultiplier
	return (in*p.InputPerMTok + float64(u.OutputTokens)*p.OutputPerMTok) / 1e6
}

// Tier is one model tier: which provider and model serve it, at what price,
// and how much history context it gets.
type Tier struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Model    string `json:"model"`
	// Prices holds the tier's price history; PriceAt picks the one in
	// force on a date.
	Prices []Price `json:"prices"`
	// ContextBudgetTokens is the history budget handed to the compress
	// policy for a message answered by this tier.
	ContextBudgetTokens int `json:"context_budget_tokens"`
	// MaxOutputTokens caps each answer; 0 means 1024.
	MaxOutputTokens int `json:"max_output_tokens"`
}

// PriceAt returns the price in force at t: the latest one whose effective
// date is not after t, or the earliest one if all are later.
func (t *Tier) PriceAt(at time.Time) Price {
	if len(t.Prices) == 0 {
		return Price{}
	}
	best := t.Prices[0] // sorted by NewTiers, earliest first
	for _, p := range t.Prices[1:] {
		if !p.Effective.After(at) {
			best = p
		}
	}
	return best
}

// Date is a calendar day, YYYY-MM-DD in JSON.
type Date struct{ time.Time }

// MustDate parses YYYY-MM-DD and panics on error; for literals.
func MustDate(s string) Date {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return Date{t}
}

// MarshalJSON writes the date as YYYY-MM-DD.
func (d Date) MarshalJSON() ([]byte, error) { return json.Marshal(d.Format(time.DateOnly)) }

// UnmarshalJSON reads YYYY-MM-DD.
func (d *Date) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("llm: date: %w", err)
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return fmt.Errorf("llm: date: %w", err)
	}
	d.Time = t
	return nil
}

// Tiers is the tier configuration. Build it with DefaultTiers or
// LoadTiers; it is read-only afterwards and safe for concurrent use.
type Tiers struct {
	byName map[string]*Tier
	list   []*Tier
}

// anthropicPrice is Anthropic's prompt-cache pricing: reads at 10% of the
// input price, 5-minute writes at 125%.
func anthropicPrice(effective string, in, out float64) Price {
	return Price{Effective: MustDate(effective), InputPerMTok: in, OutputPerMTok: out,
		CacheReadMultiplier: 0.1, CacheWriteMultiplier: 1.25}
}

// DefaultTierList returns the default tiers: economy Claude Haiku 4.5
// ($1/$5 per million input/output tokens), standard Claude Sonnet 4.5
// ($3/$15), premium Claude Opus 4.5 ($5/$25), all served by provider.
func DefaultTierList(provider string) []Tier {
	return []Tier{
		{Name: TierEconomy, Provider: provider, Model: "claude-haiku-4-5",
			Prices: []Price{anthropicPrice("2025-10-15", 1, 5)}, ContextBudgetTokens: 1000, MaxOutputTokens: 512},
		{Name: TierStandard, Provider: provider, Model: "claude-sonnet-4-5",
			Prices: []Price{anthropicPrice("2025-09-29", 3, 15)}, ContextBudgetTokens: 1500, MaxOutputTokens: 1024},
		{Name: TierPremium, Provider: provider, Model: "claude-opus-4-5",
			Prices: []Price{anthropicPrice("2025-11-24", 5, 25)}, ContextBudgetTokens: 2500, MaxOutputTokens: 2048},
	}
}

// DefaultTiers returns DefaultTierList(provider) as Tiers.
func DefaultTiers(provider string) *Tiers {
	t, err := NewTiers(DefaultTierList(provider))
	if err != nil {
		panic(err)
	}
	return t
}

// NewTiers validates list: each of economy, standard and premium once, a
// provider, a model and at least one price each.
func NewTiers(list []Tier) (*Tiers, error) {
	ts := &Tiers{byName: map[string]*Tier{}}
	for i := range list {
		t := list[i]
		switch t.Name {
		case TierEconomy, TierStandard, TierPremium:
		default:
			return nil, fmt.Errorf("llm: tier %d: name %q: want economy, standard or premium", i, t.Name)
		}
		if _, dup := ts.byName[t.Name]; dup {
			return nil, fmt.Errorf("llm: tier %q listed twice", t.Name)
		}
		if t.Provider == "" || t.Model == "" {
			return nil, fmt.Errorf("llm: tier %q: provider and model are required", t.Name)
		}
		if len(t.Prices) == 0 {
			return nil, fmt.Errorf("llm: tier %q: at least one price is required", t.Name)
		}
		for _, p := range t.Prices {
			if p.InputPerMTok < 0 || p.OutputPerMTok < 0 || p.CacheReadMultiplier < 0 || p.CacheWriteMultiplier < 0 {
				return nil, fmt.Errorf("llm: tier %q: negative price", t.Name)
			}
		}
		sort.Slice(t.Prices, func(a, b int) bool { return t.Prices[a].Effective.Before(t.Prices[b].Effective.Time) })
		if t.ContextBudgetTokens <= 0 {
			t.ContextBudgetTokens = 1500
		}
		if t.MaxOutputTokens <= 0 {
			t.MaxOutputTokens = 1024
		}
		ts.byName[t.Name] = &t
	}
	for _, n := range TierNames {
		t, ok := ts.byName[n]
		if !ok {
			return nil, fmt.Errorf("llm: tier %q missing", n)
		}
		ts.list = append(ts.list, t)
	}
	return ts, nil
}

// tiersFile is the JSON form read by LoadTiers.
type tiersFile struct {
	Tiers []Tier `json:"tiers"`
}

// ParseTiers reads {"tiers": [...]} JSON. Tiers without a provider get
// defaultProvider.
func ParseTiers(b []byte, defaultProvider string) (*Tiers, error) {
	var f tiersFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("llm: tiers: %w", err)
	}
	if len(f.Tiers) == 0 {
		return nil, errors.New("llm: tiers: empty list")
	}
	for i := range f.Tiers {
		if f.Tiers[i].Provider == "" {
			f.Tiers[i].Provider = defaultProvider
		}
	}
	return NewTiers(f.Tiers)
}

// LoadTiers reads a tiers file (see ParseTiers).
func LoadTiers(path, defaultProvider string) (*Tiers, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llm: tiers: %w", err)
	}
	return ParseTiers(b, defaultProvider)
}

// Get returns the tier named name.
func (ts *Tiers) Get(name string) (*Tier, bool) {
	t, ok := ts.byName[name]
	return t, ok
}

// List returns the tiers from cheapest to dearest. The caller must not
// modify them.
func (ts *Tiers) List() []*Tier { return ts.list }

// ByModel returns the tier whose model is model.
func (ts *Tiers) ByModel(model string) (*Tier, bool) {
	for _, t := range ts.list {
		if t.Model == model {
			return t, true
		}
	}
	return nil, false
}

// Providers returns the distinct provider names the tiers use.
func (ts *Tiers) Providers() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range ts.list {
		if !seen[t.Provider] {
			seen[t.Provider] = true
			out = append(out, t.Provider)
		}
	}
	return out
}
