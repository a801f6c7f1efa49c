package compressor

import (
	"math"
	"slices"
	"strings"

	"github.com/wingman-app/wingate/sdk/abi"
)

// defaultTokensPerByte is used when the history carries no token counts.
const defaultTokensPerByte = 0.3

// maxSentenceBytes bounds one summary line: longer sentences are rarely
// dense in facts and would crowd the rest out.
const maxSentenceBytes = 240

// minSummaryRel is the relevance (share of the best score among the
// messages left out) that makes a sentence without facts worth a line.
const minSummaryRel = 0.5

// minSentenceContent is the number of content words (not stopwords) a
// summary sentence needs.
const minSentenceContent = 3

// minSentenceBytes drops greetings and acknowledgements from the summary.
const minSentenceBytes = 16

// span is a candidate summary sentence.
type span struct {
	msg        int
	start, end int // byte range in the message's text
	score      float64
	cost       int64
}

// tokensPerByte is the history's own ratio of given tokens to text bytes.
func tokensPerByte(msgs []abi.Message) float64 {
	var tokens, bytes int64
	for i := range msgs {
		tokens += int64(msgs[i].Tokens)
		bytes += int64(len(msgs[i].Text))
	}
	if tokens == 0 || bytes == 0 {
		return defaultTokensPerByte
	}
	return float64(tokens) / float64(bytes)
}

// summarise builds an extractive summary of the messages not kept, at most
// avail estimated tokens (and at most SummaryMaxTokens), from the sentences
// that carry names, numbers and times or relate to the query. It returns
// the summary and its estimated token cost.
func (c *Compressor) summarise(msgs []abi.Message, a *analysis, scores []float64, kept []bool, avail int64) (string, int64) {
	if avail > int64(c.cfg.SummaryMaxTokens) {
		avail = int64(c.cfg.SummaryMaxTokens)
	}
	if avail < int64(c.cfg.SummaryMinTokens) || avail <= 0 {
		return "", 0
	}
	ratio := tokensPerByte(msgs) * c.cfg.TokenSafety
	maxScore := 0.0
	for i, s := range scores {
		if !kept[i] && s > maxScore {
			maxScore = s
		}
	}
	// A capitalised word used all through the conversation (a nickname,
	// a greeting) says nothing new; a rarer one is a name worth keeping.
	rareDF := int32(len(msgs) / 40)
	if rareDF < 2 {
		rareDF = 2
	}
	var spans []span
	for i := range msgs {
		if kept[i] {
			continue
		}
		text := msgs[i].Text
		d := &a.docs[i]
		prefix := 0
		if d.textStart > 0 {
			prefix = d.textStart // "Name: " is repeated on every line
		}
		rel := 0.0
		if maxScore > 0 {
			rel = scores[i] / maxScore
		}
		if len(d.facts) == 0 && rel < minSummaryRel {
			continue // no sentence of it can qualify
		}
		prefixPieces := 0
		if prefix > 0 {
			prefixPieces = 2 // the name and the colon
		}
		start := d.textStart
		nextTerm, nextFact := 0, 0
		for _, st := range d.sents {
			end := int(st.end)
			for start < end && (text[start] == ' ' || text[start] == '\n') {
				start++
			}
			// Count the content words and facts inside [start, end).
			content, info := 0, 0
			for nextTerm < len(d.termPos) && int(d.termPos[nextTerm]) < end {
				content++
				nextTerm++
			}
			for nextFact < len(d.facts) && int(d.facts[nextFact].pos) < end {
				f := d.facts[nextFact]
				nextFact++
				if f.capital {
					if a.speakers.has(f.hash) || a.df.get(f.hash) > rareDF {
						continue
					}
				}
				info++
			}
			// Questions and short exchanges state no facts; a sentence
			// earns its line with a fact or with relevance to the query.
			if n := end - start; n >= minSentenceBytes && n <= maxSentenceBytes &&
				text[end-1] != '?' && content >= minSentenceContent && (info > 0 || rel >= minSummaryRel) {
				cost := lineCost(prefix+n, prefixPieces+int(st.words+st.puncts), ratio)
				spans = append(spans, span{
					msg:   i,
					start: start,
					end:   end,
					score: (2*rel + float64(info)) / math.Sqrt(float64(cost)),
					cost:  cost,
				})
			}
			start = end
		}
	}
	slices.SortFunc(spans, func(x, y span) int {
		switch {
		case x.score > y.score:
			return -1
		case x.score < y.score:
			return 1
		case x.msg != y.msg:
			return y.msg - x.msg
		}
		return x.start - y.start
	})
	var cost int64
	chosen := spans[:0]
	seen := make(map[uint32]struct{}, 16)
	for _, s := range spans {
		if avail-cost < 4 {
			break
		}
		if cost+s.cost > avail {
			continue
		}
		h := hashString(msgs[s.msg].Text[s.start:s.end])
		if _, dup := seen[h]; dup {
			continue
		}
		seen[h] = struct{}{}
		chosen = append(chosen, s)
		cost += s.cost
	}
	if len(chosen) == 0 {
		return "", 0
	}
	slices.SortFunc(chosen, func(x, y span) int {
		if x.msg != y.msg {
			return x.msg - y.msg
		}
		return x.start - y.start
	})
	var sb strings.Builder
	for k, s := range chosen {
		if k > 0 {
			sb.WriteByte('\n')
		}
		text := msgs[s.msg].Text
		if ts := a.docs[s.msg].textStart; ts > 0 {
			sb.WriteString(text[:ts])
		}
		sb.WriteString(text[s.start:s.end])
	}
	return sb.String(), cost
}

// lineCost estimates the tokens of one summary line of the given bytes
// (prefix and sentence) and pieces (words and punctuation marks),
// conservatively: the larger of the history's tokens-per-byte ratio (with
// the safety factor already applied) and the piece count, which short
// lines of common words approach, plus one for the newline.
func lineCost(bytes, pieces int, ratio float64) int64 {
	est := float64(bytes) * ratio
	if p := float64(pieces) * 1.1; p > est {
		est = p
	}
	return int64(math.Ceil(est)) + 1
}
