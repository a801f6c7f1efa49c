package router_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/plugins/route/internal/train"
	"github.com/wingman-app/wingate/plugins/route/router"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Targets of the evaluation (issue: default policies, route policy).
const (
	minEconomyPrecision = 0.95 // CLINC150 test: share of economy that is small_talk or meta
	minEconomyRecall    = 0.90 // CLINC150 test: share of small_talk and meta sent to economy
	minHeldOutAPGR      = 0.58 // GSM8K + MMLU, random 5-fold cross-fitted scores
	minShippedAPGR      = 0.60 // GSM8K + MMLU, the shipped model (trained on all prompts)
	minSubjectAPGR      = 0.55 // GSM8K + MMLU, subject 5-fold cross-fitted scores
)

var (
	dataOnce   sync.Once
	dataCLINC  train.CLINC
	dataPrompt []train.Prompt
	dataErr    error
)

// loadData reads the evaluation data once per test binary, or skips.
func loadData(t *testing.T) (train.CLINC, []train.Prompt) {
	t.Helper()
	dataOnce.Do(func() { dataCLINC, dataPrompt, dataErr = readData() })
	if errors.Is(dataErr, train.ErrNoData) {
		t.Skipf("evaluation data absent (%v): place the data sets in ../shared/data to run the evaluation", dataErr)
	}
	if dataErr != nil {
		t.Fatal(dataErr)
	}
	return dataCLINC, dataPrompt
}

func readData() (train.CLINC, []train.Prompt, error) {
	dir, err := train.DataDir()
	if err != nil {
		return nil, nil, err
	}
	c, err := train.LoadCLINC(dir)
	if err != nil {
		return nil, nil, err
	}
	ps, err := train.LoadRouteLLM(dir)
	return c, ps, err
}

// TestEvalCLINCEconomy measures the economy tier on CLINC150: precision =
// share of what goes to economy that is small_talk or meta; recall =
// share of small_talk and meta that goes to economy. It runs the shipped
// router (default config and generated model), which was trained on the
// train split only; test is the figure asserted.
func TestEvalCLINCEconomy(t *testing.T) {
	c, _ := loadData(t)
	rt, err := router.New(router.DefaultConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, split := range []string{"val", "test"} {
		var tp, fp, fn, n int
		for _, u := range c[split] {
			d := rt.Decide(&abi.RouteRequest{Message: u.Text, Purpose: abi.PurposeChat})
			econ := d.Tier == abi.TierEconomy
			switch {
			case econ && u.Chat():
				tp++
			case econ:
				fp++
			case u.Chat():
				fn++
			}
			n++
		}
		prec := float64(tp) / float64(tp+fp)
		rec := float64(tp) / float64(tp+fn)
		t.Logf("CLINC150 %s (%d utterances): economy precision %.4f (%d/%d), recall of small_talk+meta %.4f (%d/%d)",
			split, n, prec, tp, tp+fp, rec, tp, tp+fn)
		if split == "test" {
			if prec < minEconomyPrecision {
				t.Errorf("test economy precision %.4f < %.2f", prec, minEconomyPrecision)
			}
			if rec < minEconomyRecall {
				t.Errorf("test economy recall %.4f < %.2f", rec, minEconomyRecall)
			}
		}
	}
	var econ int
	for _, u := range c["oos_test"] {
		if rt.Decide(&abi.RouteRequest{Message: u.Text}).Tier == abi.TierEconomy {
			econ++
		}
	}
	t.Logf("CLINC150 oos_test (%d out-of-scope utterances, not in the target): %.4f sent to economy",
		len(c["oos_test"]), float64(econ)/float64(len(c["oos_test"])))
}

// TestEvalRouteLLM measures the score as a router between a weak
// (Mixtral-8x7B) and a strong (GPT-4) model on GSM8K + MMLU: APGR and
// CPT(50%), CPT(80%), for the shipped model (in-sample: it was trained on
// these prompts), for scores cross-fitted over 5 random folds and over 5
// subject folds (held out), and for random routing (20 seeded shuffles;
// analytically 0.5, 0.5, 0.8).
func TestEvalRouteLLM(t *testing.T) {
	c, ps := loadData(t)
	rt, err := router.New(router.DefaultConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	shipped := make([]float64, len(ps))
	for i, p := range ps {
		shipped[i] = rt.Score(p.Text, 0).Score
	}
	ra, r50, r80 := train.Random(ps, 20, 7)
	report := func(name string, scores []float64) train.Curve {
		cu := train.NewCurve(scores, ps)
		t.Logf("%-34s APGR %.4f  CPT(50%%) %.4f  CPT(80%%) %.4f", name, cu.APGR(), cu.CPT(0.5), cu.CPT(0.8))
		return cu
	}
	cu := report("shipped model (in-sample)", shipped)
	t.Logf("all %d prompts: weak accuracy %.4f, strong accuracy %.4f", len(ps), cu.Weak, cu.Strong)
	t.Logf("%-34s APGR %.4f  CPT(50%%) %.4f  CPT(80%%) %.4f", "random routing (20 seeded runs)", ra, r50, r80)

	fz := train.FeaturizeAll(c, ps)
	heldOut := train.DefaultRecipe.CrossFit(fz, 5, train.Fold, router.DefaultConfig)
	ho := report("held out, random 5-fold", heldOut)
	if testing.Short() {
		t.Log("short mode: subject 5-fold cross-fit skipped")
	} else {
		bySubject := train.DefaultRecipe.CrossFit(fz, 5, train.SubjectFold, router.DefaultConfig)
		if a := report("held out, subject 5-fold", bySubject).APGR(); a < minSubjectAPGR {
			t.Errorf("subject-held-out APGR %.4f < %.2f", a, minSubjectAPGR)
		}
	}

	// Per data set, held-out random 5-fold scores.
	for _, g := range []string{"gsm8k", "mmlu"} {
		var s []float64
		var sub []train.Prompt
		for i, p := range ps {
			if (p.Subject == "gsm8k") == (g == "gsm8k") {
				s = append(s, heldOut[i])
				sub = append(sub, p)
			}
		}
		cg := train.NewCurve(s, sub)
		t.Logf("held out, random 5-fold, %-5s (%5d) APGR %.4f  CPT(50%%) %.4f  CPT(80%%) %.4f",
			g, len(sub), cg.APGR(), cg.CPT(0.5), cg.CPT(0.8))
	}

	if a := cu.APGR(); a < minShippedAPGR || a < ra+0.05 {
		t.Errorf("shipped APGR %.4f, want ≥ %.2f and ≥ random %.4f + 0.05", a, minShippedAPGR, ra)
	}
	if a := ho.APGR(); a < minHeldOutAPGR || a < ra+0.05 {
		t.Errorf("held-out APGR %.4f, want ≥ %.2f and ≥ random %.4f + 0.05", a, minHeldOutAPGR, ra)
	}
	if ho.CPT(0.5) >= r50 || ho.CPT(0.8) >= r80 {
		t.Errorf("held-out CPT(50%%) %.4f / CPT(80%%) %.4f not below random %.4f / %.4f", ho.CPT(0.5), ho.CPT(0.8), r50, r80)
	}
}
