//go:build tune

package compressor_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/plugins/compress/compressor"
	"github.com/wingman-app/wingate/plugins/compress/internal/evaldata"
	"github.com/wingman-app/wingate/sdk/abi"
)

// TestTune searches the configuration by coordinate ascent on the tuning
// conversations only and prints the held-out figures beside. It is a
// development tool of up to an hour, built only with the "tune" tag:
//
//	WINGATE_COMPRESS_TUNE=k1,b go test -tags tune -run TestTune -v -timeout 60m ./plugins/compress/compressor
//
// WINGATE_COMPRESS_TUNE names the parameters to search (unset or "1":
// all of them).
func TestTune(t *testing.T) {
	all := loadLocomo(t)
	var tune, held []*evaldata.Conv
	heldIDs := heldOut(all)
	for _, c := range all {
		isHeld := false
		for _, id := range heldIDs {
			isHeld = isHeld || id == c.ID
		}
		if isHeld {
			held = append(held, c)
		} else {
			tune = append(tune, c)
		}
	}
	cfg, err := compressor.ParseConfig(policytest.ShippedConfig(t, "compress"))
	if err != nil {
		t.Fatal(err)
	}
	eval := func(cfg compressor.Config, convs []*evaldata.Conv) (float64, float64) {
		comp, err := compressor.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d := func(req *abi.CompressRequest) abi.CompressDecision { return comp.Compress(req) }
		return measure(convs, 0.10, d, false).rate(), measure(convs, 0.30, d, false).rate()
	}
	objective := func(a, b float64) float64 { return a + b }
	a, b := eval(cfg, tune)
	best := objective(a, b)
	ha, hb := eval(cfg, held)
	t.Logf("start: tune %.3f/%.3f held %.3f/%.3f", a, b, ha, hb)
	type param struct {
		name string
		get  func(c *compressor.Config) float64
		set  func(c *compressor.Config, v float64)
		vals []float64
	}
	fl := func(name string, ptr func(c *compressor.Config) *float64, vals ...float64) param {
		return param{name, func(c *compressor.Config) float64 { return *ptr(c) },
			func(c *compressor.Config, v float64) { *ptr(c) = v }, vals}
	}
	in := func(name string, ptr func(c *compressor.Config) *int, vals ...float64) param {
		return param{name, func(c *compressor.Config) float64 { return float64(*ptr(c)) },
			func(c *compressor.Config, v float64) { *ptr(c) = int(v) }, vals}
	}
	paramList := []param{
		fl("context_weight", func(c *compressor.Config) *float64 { return &c.ContextWeight }, 0, 0.1, 0.2, 0.4, 0.8),
		in("context_window", func(c *compressor.Config) *int { return &c.ContextWindow }, 4, 8, 16, 32),
		in("neighbor_span", func(c *compressor.Config) *int { return &c.NeighborSpan }, 2, 3, 4, 5, 6, 8),
		fl("neighbor_decay", func(c *compressor.Config) *float64 { return &c.NeighborDecay }, 0.3, 0.5, 0.7, 0.85),
		fl("neighbor_weight", func(c *compressor.Config) *float64 { return &c.NeighborWeight }, 0.15, 0.3, 0.45, 0.6),
		fl("neighbor_pull", func(c *compressor.Config) *float64 { return &c.NeighborPull }, 0, 0.4, 0.6, 0.8, 1),
		fl("answer_weight", func(c *compressor.Config) *float64 { return &c.AnswerWeight }, 0, 0.2, 0.4, 0.6),
		fl("length_alpha", func(c *compressor.Config) *float64 { return &c.LengthAlpha }, 0.3, 0.4, 0.5, 0.6, 0.7),
		fl("length_offset", func(c *compressor.Config) *float64 { return &c.LengthOffset }, 0, 5, 10, 20),
		fl("k1", func(c *compressor.Config) *float64 { return &c.K1 }, 0.9, 1.2, 1.6),
		fl("b", func(c *compressor.Config) *float64 { return &c.B }, 0.5, 0.75, 0.9),
		fl("bigram_weight", func(c *compressor.Config) *float64 { return &c.BigramWeight }, 0, 0.25, 0.5, 1),
		fl("entity_boost", func(c *compressor.Config) *float64 { return &c.EntityBoost }, 0, 0.25, 0.5, 1),
		fl("speaker_boost", func(c *compressor.Config) *float64 { return &c.SpeakerBoost }, 0, 0.2, 0.4, 0.8),
		fl("temporal_boost", func(c *compressor.Config) *float64 { return &c.TemporalBoost }, 0, 0.15, 0.3, 0.6),
		fl("number_boost", func(c *compressor.Config) *float64 { return &c.NumberBoost }, 0, 0.2, 0.4),
		fl("prf_weight", func(c *compressor.Config) *float64 { return &c.PRFWeight }, 0, 0.1, 0.2, 0.35),
		in("prf_terms", func(c *compressor.Config) *int { return &c.PRFTerms }, 4, 8, 16),
		in("prf_docs", func(c *compressor.Config) *int { return &c.PRFDocs }, 3, 5, 10),
		fl("recent_fraction", func(c *compressor.Config) *float64 { return &c.RecentFraction }, 0.02, 0.05, 0.08),
		fl("summary_fraction", func(c *compressor.Config) *float64 { return &c.SummaryFraction }, 0.02, 0.04, 0.06),
		fl("synonym_weight", func(c *compressor.Config) *float64 { return &c.SynonymWeight }, 0.25, 0.5, 0.75, 1),
	}
	var params []param
	for _, p := range paramList {
		want := os.Getenv("WINGATE_COMPRESS_TUNE")
		if want == "" || want == "1" || strings.Contains(","+want+",", ","+p.name+",") {
			params = append(params, p)
		}
	}
	for round := 0; round < 2; round++ {
		improved := false
		for _, p := range params {
			orig := p.get(&cfg)
			bestV := orig
			for _, v := range p.vals {
				if v == orig {
					continue
				}
				p.set(&cfg, v)
				a, b := eval(cfg, tune)
				if o := objective(a, b); o > best+1e-9 {
					best, bestV, improved = o, v, true
					ha, hb := eval(cfg, held)
					t.Logf("%s=%v: tune %.3f/%.3f held %.3f/%.3f", p.name, v, a, b, ha, hb)
				}
			}
			p.set(&cfg, bestV)
		}
		if !improved {
			break
		}
	}
	out, _ := json.Marshal(cfg)
	fmt.Println(string(out))
}
