package router

import "math"

// HashBits is the size of the hashed n-gram space: every unigram and
// bigram of a message is hashed to one of 1<<HashBits weights.
const HashBits = 14

const hashMask = 1<<HashBits - 1

// MaxNgrams bounds how many n-grams of one message take part in the
// hashed part of the score (the first MaxNgrams/2 tokens). The dense
// features still see the whole message. It bounds the work and the
// on-stack buffer of a decision.
const MaxNgrams = 1024

// minScaleNgrams keeps the n-gram part of a short message small: the
// weights of a handful of n-grams are noisy, and a message of a few words
// is judged mostly by its dense features.
const minScaleNgrams = 48

// Indexes of the dense features. Each is a small, bounded number computed
// from the whole message; together with the hashed n-grams they are the
// input of both linear models.
const (
	FBias        = iota // always 1
	FLogWords           // log(1 + words)
	FWordLen            // mean word length / 10
	FQuestions          // question marks, at most 3
	FSentences          // log(1 + sentences)
	FLines              // log(1 + line breaks)
	FNumbers            // log(1 + number tokens)
	FMathSym            // log(1 + math symbols: = + * ^ < > % and the like)
	FMathWords          // log(1 + maths vocabulary)
	FCodeSym            // log(1 + code punctuation: { } ; ` _ ( ) [ ])
	FCodeWords          // log(1 + code vocabulary)
	FReasonWords        // log(1 + reasoning vocabulary: why, explain, prove …)
	FStepWords          // log(1 + multi-step instruction vocabulary)
	FCreative           // log(1 + writing-task vocabulary)
	FChatShare          // share of tokens that are small-talk / acknowledgement words
	FChatOnly           // 1 when every token is a small-talk / acknowledgement word
	FChoices            // log(1 + multiple-choice option lines "A." … "D.")
	FCapitals           // share of words capitalised mid-sentence (names, terms)
	FLongWords          // share of words of 9 letters or more
	FAdvice             // log(1 + advice-seeking phrases: how do I, should I …)
	NumDense
)

// DenseNames names the dense features, for the generator and reports.
var DenseNames = [NumDense]string{
	"bias", "log_words", "word_len", "questions", "sentences", "lines",
	"numbers", "math_sym", "math_words", "code_sym", "code_words",
	"reason_words", "step_words", "creative", "chat_share", "chat_only",
	"choices", "capitals", "long_words", "advice",
}

// Features is the representation of one message shared by the models:
// the dense features and the hashed n-gram indexes. Each n-gram counts
// with weight Scale, so long messages do not swamp the dense part.
type Features struct {
	Dense [NumDense]float32
	Scale float32
	Words int
}

// token classes, a bit set stored in the lexicon table.
const (
	lexMath uint16 = 1 << iota
	lexCode
	lexReason
	lexStep
	lexCreative
	lexChat
	lexAdvice
	lexGlue // function words that may appear in an acknowledgement
	lexHead // first word of a two-word entry
)

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
	// bosHash stands for the start of the message in the first bigram.
	bosHash = 0x9e3779b9
	// numHash replaces every all-digit token, so numbers share weights.
	numHash = 0x7f4a7c15
)

// pairHash combines two token hashes into a bigram hash.
func pairHash(a, b uint32) uint32 {
	h := a*0x85ebca6b ^ (b + 0x27d4eb2f)
	h ^= h >> 15
	h *= 0xc2b2ae35
	h ^= h >> 13
	return h
}

// mixIndex maps a token or bigram hash to a weight index.
func mixIndex(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x7feb352d
	h ^= h >> 15
	return h & hashMask
}

// Byte classes, looked up in one table: the tokenizer runs once per byte
// of every message, and a table load is cheaper than comparisons,
// especially inside WebAssembly.
const (
	cLetter = 1 << iota
	cDigit
)

// Punctuation kinds, from a table: most bytes between tokens are spaces,
// and a table load is cheaper than a many-way switch.
const (
	pNone uint8 = iota
	pQuestion
	pStop // . or !
	pNewline
	pMath
	pCode
)

var (
	punct     [256]uint8
	byteClass [256]uint8
	lowerByte [256]byte
	log1pTab  [256]float32
)

func init() {
	for i := 0; i < 256; i++ {
		c := byte(i)
		lowerByte[i] = c
		switch {
		case c >= 'a' && c <= 'z', c >= 0x80:
			byteClass[i] = cLetter
		case c >= 'A' && c <= 'Z':
			byteClass[i] = cLetter
			lowerByte[i] = c + 'a' - 'A'
		case c >= '0' && c <= '9':
			byteClass[i] = cDigit
		}
		log1pTab[i] = float32(math.Log1p(float64(i)))
	}
	for _, c := range "=+*^<>%/|" {
		punct[c] = pMath
	}
	for _, c := range "{};`_()[]#$&\\" {
		punct[c] = pCode
	}
	punct['?'], punct['.'], punct['!'], punct['\n'] = pQuestion, pStop, pStop, pNewline
}

func isLetter(c byte) bool { return byteClass[c]&cLetter != 0 }
func isDigit(c byte) bool  { return byteClass[c]&cDigit != 0 }
func lower(c byte) byte    { return lowerByte[c] }

// log1p is log(1 + n) for a count n ≥ 0, from a table for small counts.
func log1p(n int) float32 {
	if n < len(log1pTab) {
		return log1pTab[n]
	}
	return float32(math.Log1p(float64(n)))
}

// Extract computes the features of msg and appends the hashed n-gram
// indexes to idx, returning it. It does not allocate when idx has room
// for MaxNgrams indexes.
func Extract(msg string, f *Features, idx []uint32) []uint32 {
	lexOnce.Do(buildLexicon)
	*f = Features{}
	var (
		words, letters, caps, long, numbers  int
		mathSym, codeSym, sentences, lines   int
		questions, choices, chatTok          int
		nMath, nCode, nReason, nStep, nCreat int
		nAdvice                              int
		prev                                 uint32 = bosHash
		nonChat                              int
		prevChat, prevNon                    bool
		prevLex                              uint16
		sentenceStart                        = true
		lineStart                            = true
	)
	n := len(msg)
	for i := 0; i < n; {
		c := msg[i]
		if byteClass[c] != 0 {
			// A token: letters, digits, inner apostrophes (dropped).
			start := i
			h := uint32(fnvOffset)
			allDigits := true
			for i < n {
				c = msg[i]
				if cl := byteClass[c]; cl != 0 {
					if cl != cDigit {
						allDigits = false
					}
					h = (h ^ uint32(lowerByte[c])) * fnvPrime
					i++
					continue
				}
				if (c == '\'' || c == '.' && allDigits || c == ',' && allDigits) && i+1 < n && byteClass[msg[i+1]] != 0 {
					i++
					continue
				}
				break
			}
			tl := i - start
			if allDigits {
				h = numHash
				numbers++
			} else {
				letters += tl
				if tl >= 9 {
					long++
				}
				if !sentenceStart && msg[start] >= 'A' && msg[start] <= 'Z' {
					caps++
				}
			}
			// Multiple-choice option lines: "A." / "B)" at a line start.
			if lineStart && tl == 1 && i < n && (msg[i] == '.' || msg[i] == ')') && msg[start] >= 'A' && msg[start] <= 'H' {
				choices++
			}
			words++
			ph := pairHash(prev, h)
			lx := lookupLex(h)
			var bi uint16
			if prevLex&lexHead != 0 {
				bi = lookupLex(ph)
			}
			prevLex = lx
			lx |= bi
			if lx == 0 {
				// Most tokens are in no lexicon.
				prevChat, prevNon = false, true
				nonChat++
			} else {
				if lx&lexMath != 0 {
					nMath++
				}
				if lx&lexCode != 0 {
					nCode++
				}
				if lx&lexReason != 0 {
					nReason++
				}
				if lx&lexStep != 0 {
					nStep++
				}
				if lx&lexCreative != 0 {
					nCreat++
				}
				if lx&lexAdvice != 0 {
					nAdvice++
				}
				switch {
				case bi&lexChat != 0:
					if !prevChat {
						chatTok++
					}
					if prevNon {
						nonChat--
					}
					chatTok++
					prevChat, prevNon = true, false
				case lx&lexChat != 0:
					chatTok++
					prevChat, prevNon = true, false
				default:
					prevChat, prevNon = false, lx&lexGlue == 0
					if prevNon {
						nonChat++
					}
				}
			}
			if len(idx)+2 <= cap(idx) && len(idx)+2 <= MaxNgrams {
				idx = append(idx, mixIndex(h), mixIndex(ph))
			}
			prev = h
			sentenceStart = false
			lineStart = false
			continue
		}
		p := punct[c]
		i++
		if p == pNone {
			continue
		}
		switch p {
		case pQuestion:
			questions++
			sentences++
			sentenceStart = true
		case pStop:
			if i == n || msg[i] == ' ' || msg[i] == '\n' {
				sentences++
				sentenceStart = true
			}
		case pNewline:
			lines++
			lineStart = true
			sentenceStart = true
		case pMath:
			mathSym++
		case pCode:
			codeSym++
		}
	}
	if words > 0 && !sentenceStart {
		sentences++
	}
	d := &f.Dense
	d[FBias] = 1
	d[FLogWords] = log1p(words)
	if w := words - numbers; w > 0 {
		d[FWordLen] = float32(letters) / float32(w) / 10
		d[FCapitals] = float32(caps) / float32(w)
		d[FLongWords] = float32(long) / float32(w)
	}
	d[FQuestions] = float32(min(questions, 3))
	d[FSentences] = log1p(sentences)
	d[FLines] = log1p(lines)
	d[FNumbers] = log1p(numbers)
	d[FMathSym] = log1p(mathSym)
	d[FMathWords] = log1p(nMath)
	d[FCodeSym] = log1p(codeSym)
	d[FCodeWords] = log1p(nCode)
	d[FReasonWords] = log1p(nReason)
	d[FStepWords] = log1p(nStep)
	d[FCreative] = log1p(nCreat)
	if words > 0 {
		d[FChatShare] = float32(min(chatTok, words)) / float32(words)
		if chatTok > 0 && nonChat == 0 {
			d[FChatOnly] = 1
		}
	}
	d[FChoices] = log1p(choices)
	d[FAdvice] = log1p(nAdvice)
	f.Words = words
	if len(idx) > 0 {
		f.Scale = float32(1 / math.Sqrt(float64(max(len(idx), minScaleNgrams))))
	}
	return idx
}
