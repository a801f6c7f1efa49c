// Package router is the algorithm of Wingate's default route policy: it
// scores a chat message in [0, 1] by how much a stronger model would help
// answer it and maps the score to a model tier.
//
// The score combines two small linear models over one pass of feature
// extraction (see Model and Extract): the probability p_chat that the
// message is small talk or an acknowledgement, and the probability p_hard
// that a weak model gets it wrong:
//
//	score = (1 - p_chat) × (floor + (1 - floor) × p_hard) + history boost
//
// so small talk ranks lowest, every other message ranks by p_hard, and
// the ranking is continuous. The tier follows from thresholds in Config.
//
// The package has no dependencies beyond the standard library and the ABI
// types; it runs natively (tests, benchmarks, the evaluation) and inside
// the policy's WebAssembly module (plugins/route). A decision does not
// allocate: the reason is one of a fixed set of strings.
package router

import (
	"github.com/wingman-app/wingate/sdk/abi"
)

// Router decides tiers. It is immutable after New and safe for
// concurrent use.
type Router struct {
	cfg   Config
	model *Model
}

// New returns a Router with the configuration c and the model m; a nil m
// means the generated default model.
func New(c Config, m *Model) (*Router, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = &defaultModel
	}
	if m.ChatHash == nil || m.HardHash == nil {
		return nil, ErrConfig
	}
	return &Router{cfg: c, model: m}, nil
}

// DefaultModel returns the generated model (read-only).
func DefaultModel() *Model { return &defaultModel }

// Config returns the router's configuration.
func (r *Router) Config() Config { return r.cfg }

// reasons, indexed by reason code; the assessment variants are prefixed.
const (
	rSmallTalk = iota
	rAck
	rMaths
	rCode
	rReasoning
	rSteps
	rWriting
	rLong
	rVocabulary
	rAdvice
	rSimple
	numReasons
)

var reasonText = [numReasons]string{
	rSmallTalk:  "small talk",
	rAck:        "acknowledgement",
	rMaths:      "maths",
	rCode:       "code",
	rReasoning:  "reasoning",
	rSteps:      "multi-step instructions",
	rWriting:    "writing task",
	rLong:       "long message",
	rVocabulary: "specialist vocabulary",
	rAdvice:     "advice question",
	rSimple:     "simple request",
}

var assessmentReason = func() (a [numReasons]string) {
	for i, s := range reasonText {
		a[i] = "assessment: " + s
	}
	return a
}()

// Score holds the parts of one message's score.
type Score struct {
	Score float64 // final score in [0, 1]
	Chat  float64 // probability of small talk
	Hard  float64 // probability that a weak model gets it wrong
	// reason code
	reason int
}

// Score computes the score of msg with historyTokens tokens of history.
func (r *Router) Score(msg string, historyTokens uint32) Score {
	var (
		f   Features
		buf [MaxNgrams]uint32
	)
	idx := Extract(msg, &f, buf[:0])
	zc, zh, hashed := r.model.Logits(&f, idx)
	zc -= taskPenalty*(f.Dense[FCreative]+f.Dense[FCodeWords]+f.Dense[FMathWords]+f.Dense[FReasonWords]) +
		chatLengthPenalty*max(f.Dense[FLogWords]-chatLengthKnee, 0)
	c := &r.cfg
	zh += r.cueLogit(&f.Dense)
	pc, ph := Sigmoid(zc), Sigmoid(float32(c.HardScale*(float64(zh)-c.HardCenter)))
	s := (1 - pc) * (c.ScoreFloor + (1-c.ScoreFloor)*ph)
	if historyTokens > 0 && c.HistoryTokensFull > 0 {
		s += (1 - pc) * c.HistoryWeight * min(1, float64(historyTokens)/float64(c.HistoryTokensFull))
	}
	s = min(max(s, 0), 1)
	return Score{Score: s, Chat: pc, Hard: ph, reason: r.reason(&f, pc, hashed)}
}

// taskPenalty lowers the small-talk logit per log count of task
// vocabulary (writing, code, maths, reasoning): CLINC150's small talk has
// "tell me a joke" but no "write a poem", so the learned model alone
// confuses the two.
const taskPenalty = 1.5

// chatLengthPenalty lowers the small-talk logit per log unit of length
// beyond chatLengthKnee (8 words): small talk and acknowledgements are
// short, and a long message that happens to use their words ("you are a
// helpful assistant, answer …") is a request.
const (
	chatLengthPenalty = 2.0
	chatLengthKnee    = 2.197
)

// lengthKnee is log(1 + 12): the length cue raises messages longer than a
// dozen words and lowers shorter ones.
const lengthKnee = 2.565

// cueLogit is the general-knowledge part of the difficulty logit.
func (r *Router) cueLogit(d *[NumDense]float32) float32 {
	c := &r.cfg.Cues
	return float32(c.Maths)*(d[FMathSym]+d[FMathWords]) +
		float32(c.Code)*(d[FCodeSym]+d[FCodeWords]) +
		float32(c.Reasoning)*d[FReasonWords] +
		float32(c.Steps)*d[FStepWords] +
		float32(c.Writing)*d[FCreative] +
		float32(c.Length)*(d[FLogWords]-lengthKnee)
}

// reason picks the feature group that contributed most to the score.
func (r *Router) reason(f *Features, pc float64, hashed float32) int {
	if pc >= 0.5 {
		if f.Dense[FChatOnly] > 0 && f.Words <= 4 {
			return rAck
		}
		return rSmallTalk
	}
	w, d, c := &r.model.HardDense, &f.Dense, &r.cfg.Cues
	// Each group's share of the difficulty logit: learned weight plus cue.
	part := func(cue float64, fs ...int) (v float32) {
		for _, i := range fs {
			v += (w[i] + float32(cue)) * d[i]
		}
		return v
	}
	best, code := float32(0.15), rSimple
	for _, g := range [...]struct {
		v    float32
		code int
	}{
		{part(c.Maths, FMathSym, FMathWords) + w[FNumbers]*d[FNumbers], rMaths},
		{part(c.Code, FCodeSym, FCodeWords), rCode},
		{part(c.Reasoning, FReasonWords), rReasoning},
		{part(c.Steps, FStepWords), rSteps},
		{part(c.Writing, FCreative), rWriting},
		{float32(c.Length) * (d[FLogWords] - lengthKnee - 1), rLong},
		{hashed, rVocabulary},
		{w[FAdvice] * d[FAdvice], rAdvice},
	} {
		if g.v > best {
			best, code = g.v, g.code
		}
	}
	return code
}

// Decide returns the tier, score and reason for one message.
func (r *Router) Decide(req *abi.RouteRequest) abi.RouteDecision {
	s := r.Score(req.Message, req.HistoryTokens)
	c := &r.cfg
	var t abi.Tier
	if req.Purpose == abi.PurposeAssessment {
		t = abi.TierStandard
		if s.Score >= c.AssessmentPremiumAt {
			t = abi.TierPremium
		}
		if mt, _ := parseTier(c.AssessmentMinTier); t < mt {
			t = mt
		}
		return abi.RouteDecision{Tier: t, Score: s.Score, Reason: assessmentReason[s.reason]}
	}
	switch {
	case s.Score < c.EconomyBelow:
		t = abi.TierEconomy
	case s.Score >= c.ChatPremiumAt:
		t = abi.TierPremium
	default:
		t = abi.TierStandard
	}
	return abi.RouteDecision{Tier: t, Score: s.Score, Reason: reasonText[s.reason]}
}

func parseTier(s string) (abi.Tier, bool) {
	switch s {
	case "economy":
		return abi.TierEconomy, true
	case "standard":
		return abi.TierStandard, true
	case "premium":
		return abi.TierPremium, true
	}
	return 0, false
}
