package train

import (
	"hash/fnv"
	"runtime"
	"sync"

	"github.com/wingman-app/wingate/plugins/route/router"
)

// Recipe says how the two models are trained: which examples, with which
// weights and hyper-parameters. DefaultRecipe is what the generator ships.
type Recipe struct {
	Chat Options
	Hard Options
	// ExamWeight is the weight of each RouteLLM prompt as a negative
	// example of small talk.
	ExamWeight float64
	// EasyWeight is the weight of each CLINC150 training utterance as an
	// example that a weak model answers well (label 0 of the hard model).
	EasyWeight float64
	// Label selects the hard model's target: "weak_wrong" (the weak model
	// fails), "gain" (the weak model fails and the strong one succeeds) or
	// "benefit" (strong − weak mapped to 0, 0.5, 1).
	Label string
}

// DefaultRecipe is the recipe of the shipped model.
var DefaultRecipe = Recipe{
	Chat:       Options{Epochs: 15, Rate: 0.3, L2Dense: 1, L2Hash: 4, Seed: 1},
	Hard:       Options{Epochs: 4, Rate: 0.05, L2Dense: 1, L2Hash: 1000, Seed: 2, DenseMask: &hardMask},
	ExamWeight: 0.2,
	EasyWeight: 0.02,
	Label:      "gain",
}

// hardMask leaves out of the difficulty model the features that only
// describe the exam format (option lines, line breaks) or small talk,
// which the exam data cannot teach and chat messages would extrapolate.
var hardMask = func() (m [router.NumDense]bool) {
	for i := range m {
		m[i] = true
	}
	for _, f := range []int{router.FLines, router.FChoices, router.FChatShare, router.FChatOnly} {
		m[f] = false
	}
	return m
}()

// Featurized holds the data sets turned into examples once, so that
// cross-validation does not extract features again.
type Featurized struct {
	ChatTrain []Example // CLINC train + oos_train, label = small talk or meta
	Prompts   []Example // RouteLLM, in LoadRouteLLM order, label unset
	PS        []Prompt

	chat *Weights // FitChat's result, cached by CrossFit
}

// Featurize extracts the features of the training data.
func FeaturizeAll(c CLINC, ps []Prompt) *Featurized {
	fz := &Featurized{PS: ps}
	for _, split := range []string{"train", "oos_train"} {
		for _, u := range c[split] {
			fz.ChatTrain = append(fz.ChatTrain, Featurize(u.Text, b2f(u.Chat()), 1))
		}
	}
	for _, p := range ps {
		fz.Prompts = append(fz.Prompts, Featurize(p.Text, 0, 1))
	}
	return fz
}

func (r Recipe) label(p Prompt) float64 {
	switch r.Label {
	case "gain":
		return b2f(p.Strong && !p.Weak)
	case "benefit":
		return (b2f(p.Strong) - b2f(p.Weak) + 1) / 2
	default:
		return b2f(!p.Weak)
	}
}

// FitChat trains the small-talk model.
func (r Recipe) FitChat(fz *Featurized) Weights {
	ex := make([]Example, 0, len(fz.ChatTrain)+len(fz.Prompts))
	ex = append(ex, fz.ChatTrain...)
	if r.ExamWeight > 0 {
		for _, e := range fz.Prompts {
			e.Y, e.W = 0, r.ExamWeight
			ex = append(ex, e)
		}
	}
	return Fit(ex, r.Chat)
}

// FitHard trains the difficulty model on the prompts for which use
// returns true (nil: all).
func (r Recipe) FitHard(fz *Featurized, use func(i int) bool) Weights {
	var ex []Example
	for i, e := range fz.Prompts {
		if use != nil && !use(i) {
			continue
		}
		e.Y, e.W = r.label(fz.PS[i]), 1
		ex = append(ex, e)
	}
	if r.EasyWeight > 0 {
		for _, e := range fz.ChatTrain {
			e.Y, e.W = 0, r.EasyWeight
			ex = append(ex, e)
		}
	}
	return Fit(ex, r.Hard)
}

// Model converts trained weights into a router.Model.
func Model(chat, hard Weights) *router.Model {
	m := &router.Model{ChatHash: new([1 << router.HashBits]float32), HardHash: new([1 << router.HashBits]float32)}
	for i := range m.ChatDense {
		m.ChatDense[i] = float32(chat.Dense[i])
		m.HardDense[i] = float32(hard.Dense[i])
	}
	for i := range m.ChatHash {
		m.ChatHash[i] = float32(chat.Hash[i])
		m.HardHash[i] = float32(hard.Hash[i])
	}
	return m
}

// Fold assigns a prompt to one of k folds by a hash of its text
// (random-split cross-validation).
func Fold(p Prompt, k int) int {
	h := fnv.New32a()
	h.Write([]byte(p.Text))
	return int(h.Sum32() % uint32(k))
}

// SubjectFold assigns a prompt to one of k folds by a hash of its subject,
// so that a subject is never both trained on and tested on.
func SubjectFold(p Prompt, k int) int {
	h := fnv.New32a()
	h.Write([]byte(p.Subject))
	return int(h.Sum32() % uint32(k))
}

// CrossFit returns, for every prompt, the router score of a model whose
// difficulty part was trained without the prompt's fold. The small-talk
// part never sees correctness labels: it is trained once per Featurized
// (with the first recipe that cross-fits it) and reused.
func (r Recipe) CrossFit(fz *Featurized, k int, fold func(Prompt, int) int, cfg router.Config) []float64 {
	if fz.chat == nil {
		w := r.FitChat(fz)
		fz.chat = &w
	}
	chat := *fz.chat
	scores := make([]float64, len(fz.PS))
	folds := make([]int, len(fz.PS))
	for i, p := range fz.PS {
		folds[i] = fold(p, k)
	}
	// Folds train independently (Fit is deterministic and fz read-only
	// from here on), so they run in parallel and write disjoint scores.
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for f := 0; f < k; f++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			hard := r.FitHard(fz, func(i int) bool { return folds[i] != f })
			rt, err := router.New(cfg, Model(chat, hard))
			if err != nil {
				panic(err)
			}
			for i, p := range fz.PS {
				if folds[i] == f {
					scores[i] = rt.Score(p.Text, 0).Score
				}
			}
		}()
	}
	wg.Wait()
	return scores
}
