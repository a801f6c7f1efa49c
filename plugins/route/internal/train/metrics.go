package train

import (
	"math/rand/v2"
	"sort"
)

// Curve is the cost/quality curve of a router on prompts with known
// per-model correctness: routing the top share of prompts by score to the
// strong model, and the performance gap recovered (PGR) at that share.
type Curve struct {
	Share  []float64 // share of strong-model calls, from 0 to 1
	PGR    []float64 // (quality of the mix − all-weak) / (all-strong − all-weak)
	Weak   float64   // accuracy of all-weak
	Strong float64   // accuracy of all-strong
}

// NewCurve sweeps a threshold over scores (higher = more in need of the
// strong model). Tied scores form one step of the curve, which is the
// expected curve under random tie-breaking.
func NewCurve(scores []float64, ps []Prompt) Curve {
	n := len(ps)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	var weak, strong float64
	for _, p := range ps {
		weak += b2f(p.Weak)
		strong += b2f(p.Strong)
	}
	gap := strong - weak
	c := Curve{Weak: weak / float64(n), Strong: strong / float64(n)}
	c.Share = append(c.Share, 0)
	c.PGR = append(c.PGR, 0)
	var gain float64
	for i := 0; i < n; {
		j := i
		for j < n && scores[order[j]] == scores[order[i]] {
			p := ps[order[j]]
			gain += b2f(p.Strong) - b2f(p.Weak)
			j++
		}
		c.Share = append(c.Share, float64(j)/float64(n))
		c.PGR = append(c.PGR, gain/gap)
		i = j
	}
	return c
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// APGR is the area under the PGR curve over the share of strong calls
// (0.5 for a random router).
func (c Curve) APGR() float64 {
	var a float64
	for i := 1; i < len(c.Share); i++ {
		a += (c.Share[i] - c.Share[i-1]) * (c.PGR[i] + c.PGR[i-1]) / 2
	}
	return a
}

// CPT is the smallest share of strong-model calls at which the PGR
// reaches x (interpolating linearly within a step), or 1 if it never does.
func (c Curve) CPT(x float64) float64 {
	for i := 1; i < len(c.Share); i++ {
		if c.PGR[i] >= x {
			p0, p1 := c.PGR[i-1], c.PGR[i]
			if p0 >= x || p1 == p0 {
				return c.Share[i-1]
			}
			return c.Share[i-1] + (c.Share[i]-c.Share[i-1])*(x-p0)/(p1-p0)
		}
	}
	return 1
}

// Random is a random router's APGR and CPT(50%), CPT(80%) averaged over
// runs seeded shuffles of ps (the expected values are 0.5, 0.5 and 0.8).
func Random(ps []Prompt, runs int, seed uint64) (apgr, cpt50, cpt80 float64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	scores := make([]float64, len(ps))
	for r := 0; r < runs; r++ {
		for i := range scores {
			scores[i] = rng.Float64()
		}
		c := NewCurve(scores, ps)
		apgr += c.APGR()
		cpt50 += c.CPT(0.5)
		cpt80 += c.CPT(0.8)
	}
	k := float64(runs)
	return apgr / k, cpt50 / k, cpt80 / k
}
