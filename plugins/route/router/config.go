package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Config is the route policy's configuration: the "config" value of its
// entry in policies/policies.json. Every field is optional; a missing one
// keeps its default (DefaultConfig). The score is in [0, 1]; the tier
// follows from it and the message's purpose:
//
//   - chat: economy below EconomyBelow, premium from ChatPremiumAt,
//     standard in between;
//   - assessment: never below AssessmentMinTier, premium from
//     AssessmentPremiumAt.
type Config struct {
	// EconomyBelow is the score under which a chat message goes to the
	// economy tier. Small talk and acknowledgements score under it.
	EconomyBelow float64 `json:"economy_below"`
	// ChatPremiumAt is the score from which a chat message goes to the
	// premium tier (above 1 disables premium for chat).
	ChatPremiumAt float64 `json:"chat_premium_at"`
	// AssessmentPremiumAt is the score from which an assessment goes to
	// the premium tier.
	AssessmentPremiumAt float64 `json:"assessment_premium_at"`
	// AssessmentMinTier is the lowest tier of an assessment:
	// "economy", "standard" or "premium".
	AssessmentMinTier string `json:"assessment_min_tier"`
	// ScoreFloor is the lowest score of a message that is certainly not
	// small talk: score = (1 - p_chat) × (ScoreFloor + (1 - ScoreFloor) ×
	// p_hard). It keeps task requests above EconomyBelow.
	ScoreFloor float64 `json:"score_floor"`
	// HistoryWeight is added to the score of a message that is not small
	// talk when its conversation holds HistoryTokensFull tokens or more
	// (proportionally below), since long contexts are harder to use well.
	HistoryWeight float64 `json:"history_weight"`
	// HistoryTokensFull is the history size at which HistoryWeight counts
	// in full.
	HistoryTokensFull uint32 `json:"history_tokens_full"`
	// HardCenter and HardScale calibrate the difficulty model:
	// p_hard = sigmoid(HardScale × (logit − HardCenter)). They stretch the
	// score over [floor, 1] without changing its order.
	HardCenter float64 `json:"hard_center"`
	HardScale  float64 `json:"hard_scale"`
	// Cues are general-knowledge weights added to the difficulty logit
	// for kinds of request that a stronger model is known to handle
	// better; exam data alone under-represents them (it has little code
	// and no multi-step instructions).
	Cues Cues `json:"cues"`
}

// Cues weighs groups of features of a message (see Extract); each group's
// feature is a log count, so a weight of 0.5 adds about 0.35 to the logit
// for one cue word and 0.55 for two.
type Cues struct {
	Maths     float64 `json:"maths"`     // maths vocabulary and symbols
	Code      float64 `json:"code"`      // code vocabulary and punctuation
	Reasoning float64 `json:"reasoning"` // why, explain, prove, compare …
	Steps     float64 `json:"steps"`     // multi-step instructions
	Writing   float64 `json:"writing"`   // writing tasks
	Length    float64 `json:"length"`    // log(1 + words) − log(13)
}

// DefaultConfig is the configuration used when none is given, and the
// one policies/policies.json states. EconomyBelow was chosen on
// CLINC150's validation split (the test split is the reported figure);
// the cue weights on held-out RouteLLM folds; HardCenter and HardScale so
// that the hard case files reach premium; the premium thresholds by hand.
var DefaultConfig = Config{
	EconomyBelow:        0.2,
	ChatPremiumAt:       0.7,
	AssessmentPremiumAt: 0.5,
	AssessmentMinTier:   "standard",
	ScoreFloor:          0.3,
	HistoryWeight:       0.05,
	HistoryTokensFull:   8000,
	HardCenter:          -0.8,
	HardScale:           2,
	Cues:                Cues{Maths: 0.4, Code: 0.5, Reasoning: 0.4, Steps: 0.3, Writing: 0.1, Length: 0.5},
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("route: invalid config")

// ParseConfig parses a JSON configuration over DefaultConfig. Empty
// input or null gives DefaultConfig. Unknown fields are an error, so that
// a misspelt threshold is not silently ignored.
func ParseConfig(b []byte) (Config, error) {
	c := DefaultConfig
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return c, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, c.Validate()
}

// Validate checks the ranges of the fields.
func (c *Config) Validate() error {
	in01 := func(name string, v float64) error {
		if !(v >= 0 && v <= 1.0000001) {
			return fmt.Errorf("%w: %s = %v, want a number in [0, 1]", ErrConfig, name, v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"economy_below", c.EconomyBelow},
		{"assessment_premium_at", c.AssessmentPremiumAt},
		{"score_floor", c.ScoreFloor},
		{"history_weight", c.HistoryWeight},
	} {
		if err := in01(f.name, f.v); err != nil {
			return err
		}
	}
	if !(c.HardScale > 0 && c.HardScale <= 100) || !(c.HardCenter >= -20 && c.HardCenter <= 20) {
		return fmt.Errorf("%w: hard_scale = %v, hard_center = %v, want (0, 100] and [-20, 20]", ErrConfig, c.HardScale, c.HardCenter)
	}
	for _, w := range [...]float64{c.Cues.Maths, c.Cues.Code, c.Cues.Reasoning, c.Cues.Steps, c.Cues.Writing, c.Cues.Length} {
		if !(w >= -5 && w <= 5) {
			return fmt.Errorf("%w: cue weight %v, want [-5, 5]", ErrConfig, w)
		}
	}
	if !(c.ChatPremiumAt >= 0 && c.ChatPremiumAt <= 2) {
		return fmt.Errorf("%w: chat_premium_at = %v, want a number in [0, 2]", ErrConfig, c.ChatPremiumAt)
	}
	if c.ChatPremiumAt < c.EconomyBelow {
		return fmt.Errorf("%w: chat_premium_at (%v) below economy_below (%v)", ErrConfig, c.ChatPremiumAt, c.EconomyBelow)
	}
	if _, ok := abi.ParseTier(c.AssessmentMinTier); !ok {
		return fmt.Errorf("%w: assessment_min_tier = %q, want economy, standard or premium", ErrConfig, c.AssessmentMinTier)
	}
	return nil
}
