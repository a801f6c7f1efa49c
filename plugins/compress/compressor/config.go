package compressor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Config holds every tunable of the compressor. The zero value of a field
// means "use the default" only where Default documents it; ParseConfig
// starts from Default and overlays what the JSON sets, so a policies file
// needs to name only the numbers it changes.
type Config struct {
	// PinSystem keeps system messages verbatim before anything else.
	PinSystem bool `json:"pin_system"`

	// RecentFraction is the share of the budget reserved for the most
	// recent messages; RecentMinTurns and RecentMaxTurns bound the window
	// (the minimum is kept even past the fraction while the budget allows).
	RecentFraction float64 `json:"recent_fraction"`
	RecentMinTurns int     `json:"recent_min_turns"`
	RecentMaxTurns int     `json:"recent_max_turns"`

	// SummaryFraction is the share of the budget reserved for the
	// extractive summary of what is not kept, at most SummaryMaxTokens.
	// SummaryMinTokens: below this the summary is left out.
	SummaryFraction  float64 `json:"summary_fraction"`
	SummaryMaxTokens int     `json:"summary_max_tokens"`
	SummaryMinTokens int     `json:"summary_min_tokens"`
	// TokenSafety multiplies the characters-to-tokens estimate of the
	// summary, so that it errs on the high side.
	TokenSafety float64 `json:"token_safety"`

	// K1 and B are the BM25 parameters.
	K1 float64 `json:"k1"`
	B  float64 `json:"b"`
	// BigramWeight scores a document that holds two query terms next to
	// each other, relative to the terms' mean IDF.
	BigramWeight float64 `json:"bigram_weight"`
	// EntityBoost multiplies the weight of query terms written with a
	// capital letter mid-sentence (names, places) or holding a digit.
	EntityBoost float64 `json:"entity_boost"`
	// SpeakerBoost raises the score of a message whose speaker (a
	// "Name:" prefix) is named in the query, as a factor (1 + boost).
	SpeakerBoost float64 `json:"speaker_boost"`
	// TemporalBoost raises, for a "when" question, the score of messages
	// that mention a time (dates, weekdays, "last week", years).
	TemporalBoost float64 `json:"temporal_boost"`
	// NumberBoost raises, for a "how many/much/long/old" question, the
	// score of messages that state a quantity.
	NumberBoost float64 `json:"number_boost"`

	// PRFDocs, PRFTerms and PRFWeight control pseudo-relevance feedback:
	// the PRFTerms best terms of the PRFDocs best messages join the query
	// with weight PRFWeight relative to an original term.
	PRFDocs   int     `json:"prf_docs"`
	PRFTerms  int     `json:"prf_terms"`
	PRFWeight float64 `json:"prf_weight"`

	// NeighborWeight adds to each message this share of its better
	// neighbour's score (answers follow questions); NeighborSpan is how
	// many messages on each side count, the weight multiplied by
	// NeighborDecay at each further step.
	NeighborWeight float64 `json:"neighbor_weight"`
	NeighborSpan   int     `json:"neighbor_span"`
	// NeighborDecay multiplies the neighbour weight at each further step.
	NeighborDecay float64 `json:"neighbor_decay"`
	// ContextWeight adds to each message this share of the mean score of
	// the ContextWindow messages on each side: a stretch of conversation
	// about the subject of the query lifts all of its turns a little.
	ContextWeight float64 `json:"context_weight"`
	ContextWindow int     `json:"context_window"`
	// AnswerWeight adds to a message this share of the score of the
	// message before it when that one asks a question: the answer to a
	// relevant question is relevant even if it shares no word with it.
	AnswerWeight float64 `json:"answer_weight"`
	// NeighborPull keeps, after a message is chosen, its immediate
	// neighbours if their own score is at least this share of its score.
	NeighborPull float64 `json:"neighbor_pull"`

	// LengthAlpha and LengthOffset turn scores into priorities for the
	// budget: priority = score / (tokens + LengthOffset)^LengthAlpha. 0
	// ranks by score alone, 1 by score per token.
	LengthAlpha  float64 `json:"length_alpha"`
	LengthOffset float64 `json:"length_offset"`
	// FillRecent spends budget that retrieval leaves unused (a query that
	// matches little) on further recent messages, newest first.
	FillRecent bool `json:"fill_recent"`
	// MinScore is the share of the best score below which a message is
	// not retrieved at all; the budget left over goes to the summary.
	MinScore float64 `json:"min_score"`

	// NoLexicon switches off the built-in expansion table (categories to
	// members, near-synonyms); Synonyms still applies.
	NoLexicon bool `json:"no_lexicon"`
	// Synonyms expands query words: each key (a word) adds its values to
	// the query with weight SynonymWeight.
	Synonyms      map[string][]string `json:"synonyms"`
	SynonymWeight float64             `json:"synonym_weight"`
	// MemoMessages is how many analysed messages an instance remembers
	// between decisions (a chat re-sends its history every turn); 0 turns
	// the memo off.
	MemoMessages int `json:"memo_messages"`
	// ExtraStopwords are dropped in addition to the built-in list.
	ExtraStopwords []string `json:"extra_stopwords"`
}

// Default returns the configuration the shipped policy uses.
func Default() Config {
	return Config{
		PinSystem:        true,
		RecentFraction:   0.08,
		RecentMinTurns:   2,
		RecentMaxTurns:   8,
		SummaryFraction:  0.04,
		SummaryMaxTokens: 400,
		SummaryMinTokens: 16,
		TokenSafety:      1.2,
		K1:               1.2,
		B:                0.75,
		BigramWeight:     0.5,
		EntityBoost:      0.5,
		SpeakerBoost:     0.2,
		TemporalBoost:    0.3,
		NumberBoost:      0.2,
		PRFDocs:          5,
		PRFTerms:         8,
		PRFWeight:        0.2,
		NeighborWeight:   0.3,
		NeighborSpan:     4,
		NeighborDecay:    0.7,
		NeighborPull:     0.6,
		AnswerWeight:     0.4,
		ContextWeight:    0,
		ContextWindow:    8,
		LengthAlpha:      0.5,
		LengthOffset:     10,
		MinScore:         0,
		FillRecent:       true,
		SynonymWeight:    0.5,
		MemoMessages:     4096,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("compressor: invalid config")

// ParseConfig overlays the JSON object b on Default and validates the
// result. Empty input (or "null") yields Default; an unknown field is an
// error.
func ParseConfig(b []byte) (Config, error) {
	c := Default()
	if len(b) > 0 && string(b) != "null" {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields() // a misspelt tunable is an error, not a default
		if err := dec.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if dec.More() {
			return Config{}, fmt.Errorf("%w: trailing data after the config object", ErrConfig)
		}
	}
	return c, c.Validate()
}

// Validate checks that every field is in range and names the first that
// is not.
func (c *Config) Validate() error {
	frac := func(name string, v float64) error {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("%w: %s must be in [0, 1], got %v", ErrConfig, name, v)
		}
		return nil
	}
	nonneg := func(name string, v float64) error {
		if !(v >= 0 && v < 1e9) {
			return fmt.Errorf("%w: %s must be a number >= 0, got %v", ErrConfig, name, v)
		}
		return nil
	}
	for _, e := range []error{
		frac("recent_fraction", c.RecentFraction),
		frac("summary_fraction", c.SummaryFraction),
		frac("b", c.B),
		frac("min_score", c.MinScore),
		frac("neighbor_pull", c.NeighborPull),
		nonneg("recent_min_turns", float64(c.RecentMinTurns)),
		nonneg("recent_max_turns", float64(c.RecentMaxTurns)),
		nonneg("summary_max_tokens", float64(c.SummaryMaxTokens)),
		nonneg("summary_min_tokens", float64(c.SummaryMinTokens)),
		nonneg("k1", c.K1),
		nonneg("bigram_weight", c.BigramWeight),
		nonneg("entity_boost", c.EntityBoost),
		nonneg("speaker_boost", c.SpeakerBoost),
		nonneg("temporal_boost", c.TemporalBoost),
		nonneg("number_boost", c.NumberBoost),
		nonneg("prf_docs", float64(c.PRFDocs)),
		nonneg("prf_terms", float64(c.PRFTerms)),
		nonneg("prf_weight", c.PRFWeight),
		nonneg("neighbor_weight", c.NeighborWeight),
		nonneg("neighbor_span", float64(c.NeighborSpan)),
		nonneg("answer_weight", c.AnswerWeight),
		nonneg("context_weight", c.ContextWeight),
		nonneg("context_window", float64(c.ContextWindow)),
		frac("neighbor_decay", c.NeighborDecay),
		nonneg("length_alpha", c.LengthAlpha),
		nonneg("length_offset", c.LengthOffset),
		nonneg("synonym_weight", c.SynonymWeight),
		nonneg("memo_messages", float64(c.MemoMessages)),
	} {
		if e != nil {
			return e
		}
	}
	if !(c.TokenSafety >= 1 && c.TokenSafety <= 4) {
		return fmt.Errorf("%w: token_safety must be in [1, 4], got %v", ErrConfig, c.TokenSafety)
	}
	if c.ContextWindow > 64 {
		return fmt.Errorf("%w: context_window must be at most 64, got %d", ErrConfig, c.ContextWindow)
	}
	if c.NeighborSpan > 8 {
		return fmt.Errorf("%w: neighbor_span must be at most 8, got %d", ErrConfig, c.NeighborSpan)
	}
	if c.MemoMessages > 1<<16 {
		return fmt.Errorf("%w: memo_messages must be at most 65536, got %d", ErrConfig, c.MemoMessages)
	}
	if c.PRFDocs > 100 || c.PRFTerms > 100 {
		return fmt.Errorf("%w: prf_docs and prf_terms must be at most 100", ErrConfig)
	}
	return nil
}
