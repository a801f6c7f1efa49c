package router

import "math"

// Model holds the weights of the two linear models a decision uses, over
// the same features (Extract):
//
//   - chat, a logistic regression giving the probability that a message is
//     small talk, an acknowledgement or a question about the assistant
//     itself (learned from CLINC150's small_talk and meta domains against
//     its task domains and against exam-style prompts);
//   - hard, a logistic regression giving the probability that a message is
//     one a weak model gets wrong, learned from RouteLLM's per-model
//     correctness on GSM8K and MMLU.
//
// The default model is generated into model_gen.go by
// plugins/route/internal/gen; a Model is read-only and safe for
// concurrent use.
type Model struct {
	ChatDense [NumDense]float32
	ChatHash  *[1 << HashBits]float32
	HardDense [NumDense]float32
	HardHash  *[1 << HashBits]float32
}

// Logits returns the two models' logits for a message's features; hashed
// is the n-gram part of the hard logit, reported separately so that a
// reason can say whether vocabulary or structure drove the score.
func (m *Model) Logits(f *Features, idx []uint32) (chat, hard, hashed float32) {
	for i, v := range f.Dense {
		chat += m.ChatDense[i] * v
		hard += m.HardDense[i] * v
	}
	var cs, hs float32
	ch, hh := m.ChatHash, m.HardHash
	for _, j := range idx {
		j &= hashMask
		cs += ch[j]
		hs += hh[j]
	}
	hashed = hs * f.Scale
	return chat + cs*f.Scale, hard + hashed, hashed
}

// Sigmoid is the logistic function.
func Sigmoid(z float32) float64 { return 1 / (1 + math.Exp(-float64(z))) }
