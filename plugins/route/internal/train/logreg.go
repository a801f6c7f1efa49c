package train

import (
	"math"
	"math/rand/v2"

	"github.com/wingman-app/wingate/plugins/route/router"
)

// Example is one training example: a message's features, its label in
// [0, 1] and its weight.
type Example struct {
	Idx   []uint32
	Scale float32
	Dense [router.NumDense]float32
	Y     float64
	W     float64
}

// Featurize extracts the features of text into an Example.
func Featurize(text string, y, w float64) Example {
	var f router.Features
	buf := make([]uint32, 0, router.MaxNgrams)
	idx := router.Extract(text, &f, buf)
	return Example{Idx: append([]uint32(nil), idx...), Scale: f.Scale, Dense: f.Dense, Y: y, W: w}
}

// Options are the hyper-parameters of Fit.
type Options struct {
	Epochs    int
	Rate      float64 // Adagrad learning rate
	L2Dense   float64 // L2 penalty on the dense weights
	L2Hash    float64 // L2 penalty on the hashed weights
	NoHash    bool    // learn only the dense weights
	Seed      uint64
	DenseMask *[router.NumDense]bool // when set, dense features outside it keep weight 0
}

// Weights of one logistic regression.
type Weights struct {
	Dense [router.NumDense]float64
	Hash  []float64
}

// Logit returns the model's logit for an example.
func (w *Weights) Logit(e *Example) float64 {
	var z float64
	for i, v := range e.Dense {
		z += float64(w.Dense[i] * float64(v))
	}
	var h float64
	for _, j := range e.Idx {
		h += w.Hash[j]
	}
	return z + float64(h*float64(e.Scale))
}

// Fit trains a weighted logistic regression with Adagrad and L2
// regularisation. The example order of each epoch comes from a PCG
// generator seeded with o.Seed, and products are rounded explicitly
// (no fused multiply-add), so the result is the same on every run.
func Fit(ex []Example, o Options) Weights {
	w := Weights{Hash: make([]float64, 1<<router.HashBits)}
	var gd [router.NumDense]float64
	gh := make([]float64, len(w.Hash))
	order := make([]int, len(ex))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	n := float64(len(ex))
	for epoch := 0; epoch < o.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			e := &ex[k]
			p := 1 / (1 + math.Exp(-w.Logit(e)))
			g := float64((p - e.Y) * e.W)
			for i, v := range e.Dense {
				if v == 0 || o.DenseMask != nil && !o.DenseMask[i] {
					continue
				}
				gi := float64(g*float64(v)) + float64(o.L2Dense*w.Dense[i])/n
				gd[i] += float64(gi * gi)
				w.Dense[i] -= float64(o.Rate*gi) / math.Sqrt(gd[i]+1e-8)
			}
			if o.NoHash {
				continue
			}
			s := float64(g * float64(e.Scale))
			for _, j := range e.Idx {
				gj := s + float64(o.L2Hash*w.Hash[j])/n
				gh[j] += float64(gj * gj)
				w.Hash[j] -= float64(o.Rate*gj) / math.Sqrt(gh[j]+1e-8)
			}
		}
	}
	return w
}

// Sigmoid is the logistic function.
func Sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
