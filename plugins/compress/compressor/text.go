package compressor

// Text analysis: a byte-level word splitter, a light English stemmer and
// 32-bit term hashes. It works on bytes and allocates nothing per word so
// that a 700-message history is analysed in well under a millisecond.

// word is one word of a text, as found by splitWords.
type word struct {
	start, end int  // byte range in the text
	capital    bool // first letter upper case and not at a sentence start
	digit      bool // contains a digit
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// isWordByte reports whether c continues a word. Bytes of multi-byte UTF-8
// sequences are word bytes, so non-ASCII words survive as opaque terms.
func isWordByte(c byte) bool { return isLetter(c) || isDigit(c) || c >= 0x80 }

// Byte classes for the word splitter.
const (
	classWord  = 1 << iota // letter, digit or a byte of a multi-byte rune
	classDigit             // 0-9
	classUpper             // A-Z
	classStop              // ends a sentence: . ! ? newline :
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if isWordByte(b) {
			t[c] |= classWord
		}
		if isDigit(b) {
			t[c] |= classDigit
		}
		if b >= 'A' && b <= 'Z' {
			t[c] |= classUpper
		}
		switch b {
		case '.', '!', '?', '\n', ':':
			t[c] |= classStop
		}
	}
	return t
}()

// wordIter yields the words of s, with the hashTerm of each word's
// lowercased bytes (in hash), computed in the same pass. An
// apostrophe inside a word (ASCII or U+2019) ends the word and the
// possessive or contraction tail is dropped: "Caroline's" yields
// "Caroline", "didn't" yields "didn".
type wordIter struct {
	s             string
	i             int
	sentenceStart bool
	hash          uint32

	// With track set, the iterator also records the sentences of s in
	// sents, at byte offsets plus base, with their word and punctuation
	// counts (what the summary's token estimate needs).
	track         bool
	base          int32
	sents         []sentence
	words, puncts int32
	finished      bool
}

// sentence is one sentence of a message: it ends (exclusive) at end and
// holds words words and puncts punctuation marks.
type sentence struct {
	end, words, puncts int32
}

// endSentence records the sentence ending at end, if it has a word.
func (it *wordIter) endSentence(end int) {
	if it.words > 0 {
		it.sents = append(it.sents, sentence{end: it.base + int32(end), words: it.words, puncts: it.puncts})
	}
	it.words, it.puncts = 0, 0
}

// isQuote reports whether s[i:] starts with a typographic quotation mark
// (U+2018, U+2019, U+201C, U+201D).
func isQuote(s string, i int) bool {
	return s[i] == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && s[i+2] >= 0x98 && s[i+2] <= 0x9D
}

// next returns the next word, or false at the end.
func (it *wordIter) next() (word, bool) {
	s := it.s
	i := it.i
	for i < len(s) {
		c := s[i]
		cl := byteClass[c]
		if cl&classWord == 0 {
			if c != ' ' {
				it.puncts++
			}
			if cl&classStop != 0 {
				it.sentenceStart = true
				if it.track && c != ':' {
					if c == '\n' {
						it.endSentence(i)
					} else if i+1 == len(s) || s[i+1] == ' ' || s[i+1] == '\n' {
						it.endSentence(i + 1)
					}
				}
			}
			i++
			continue
		}
		if c >= 0x80 && isQuote(s, i) {
			it.puncts++
			i += 3
			continue
		}
		it.words++
		w := word{start: i}
		h := uint32(2166136261)
		for i < len(s) {
			c := s[i]
			cl := byteClass[c]
			if cl&classWord == 0 || (c >= 0x80 && isQuote(s, i)) {
				break
			}
			if cl&classDigit != 0 {
				w.digit = true
			}
			if cl&classUpper != 0 {
				c += 'a' - 'A'
			}
			h ^= uint32(c)
			h *= 16777619
			i++
		}
		it.hash = h
		w.end = i
		w.capital = !it.sentenceStart && byteClass[s[w.start]]&classUpper != 0
		it.sentenceStart = false
		// Skip an apostrophe tail: 's, 't, 're, 'll, 've, 'd, 'm.
		if i < len(s) && (s[i] == '\'' || (s[i] == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && s[i+2] == 0x99)) {
			j := i + 1
			if s[i] != '\'' {
				j = i + 3
			}
			k := j
			for k < len(s) && isLetter(s[k]) && k-j < 3 {
				k++
			}
			if k > j && (k == len(s) || byteClass[s[k]]&classWord == 0) {
				i = k
				it.puncts++
			}
		}
		it.i = i
		return w, true
	}
	it.i = i
	if it.track && !it.finished {
		it.finished = true
		it.endSentence(len(s))
	}
	return word{}, false
}

// splitWords calls fn for every word of s (see wordIter).
func splitWords(s string, fn func(w word)) {
	it := wordIter{s: s, sentenceStart: true}
	for {
		w, ok := it.next()
		if !ok {
			return
		}
		fn(w)
	}
}

// lowerInto writes the ASCII-lowercased bytes of s into buf.
func lowerInto(buf []byte, s string) []byte {
	buf = buf[:0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return buf
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

func isVowel(c byte) bool { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' }

// stem strips common English inflections from a lowercased word in place:
// plurals, -ing, -ed, -ly and a final e, so that "paints", "painting" and
// "painted" share one term, as do "make" and "making". It is deliberately
// light: over-stemming joins unrelated words, which costs more in retrieval
// than a missed inflection.
func stem(b []byte) []byte {
	n := len(b)
	if n <= 3 || isDigit(b[0]) {
		return b
	}
	// Plurals. Branching on the last byte first keeps the common case (no
	// suffix) to a comparison or two.
	if b[n-1] == 's' {
		switch p := b[n-2]; {
		case p == 's' && n > 4 && b[n-3] == 'e' && b[n-4] == 's': // -sses
			b = b[:n-2]
		case p == 'e' && b[n-3] == 'i' && n > 4: // -ies
			b = append(b[:n-3], 'y')
		case p == 's' || p == 'u' || p == 'i': // -ss, -us, -is
		default:
			b = b[:n-1]
		}
		n = len(b)
	}
	switch b[n-1] {
	case 'd':
		switch {
		case n > 4 && b[n-2] == 'e' && b[n-3] == 'i': // -ied
			b = append(b[:n-3], 'y')
		case n > 3 && b[n-2] == 'e' && b[n-3] == 'e': // -eed
		case n > 4 && b[n-2] == 'e' && hasVowel(b[:n-2]): // -ed
			b = undouble(b[:n-2])
		}
	case 'g':
		if n > 5 && b[n-2] == 'n' && b[n-3] == 'i' && hasVowel(b[:n-3]) { // -ing
			b = undouble(b[:n-3])
		}
	case 'y':
		if n > 5 && b[n-2] == 'l' { // -ly
			b = b[:n-2]
		}
	}
	n = len(b)
	if n > 3 && b[n-1] == 'e' && !isVowel(b[n-2]) {
		b = b[:n-1]
	}
	return b
}

func hasVowel(b []byte) bool {
	for _, c := range b {
		if isVowel(c) || c == 'y' {
			return true
		}
	}
	return false
}

// undouble turns "runn" into "run" and "stopp" into "stop" but keeps
// "fall", "pass" and "buzz" whole.
func undouble(b []byte) []byte {
	n := len(b)
	if n >= 3 && b[n-1] == b[n-2] && !isVowel(b[n-1]) {
		switch b[n-1] {
		case 'l', 's', 'z':
			return b
		}
		return b[:n-1]
	}
	return b
}

// hashTerm is 32-bit FNV-1a.
func hashTerm(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// hashString is hashTerm of a string.
func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// pairHash combines two term hashes into a bigram hash.
func pairHash(a, b uint32) uint32 { return (a*0x9E3779B1 ^ b) * 16777619 }

// defaultStopwords are dropped from queries and documents: function words,
// question words and chat fillers that carry no topic.
var defaultStopwords = []string{
	"a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are",
	"as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
	"can", "could", "did", "do", "does", "doing", "don", "down", "during", "each", "few", "for", "from",
	"further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him",
	"himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "let", "me",
	"more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or",
	"other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some",
	"such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
	"they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we",
	"were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
	"you", "your", "yours", "yourself", "yourselves", "yes", "yeah", "oh", "wow", "hey", "hi",
	"hello", "thanks", "thank", "really", "much", "lot", "lots", "many", "get", "got", "gotten",
	"go", "going", "gone", "went", "make", "made", "thing", "things", "something", "anything",
	"everything", "kind", "sort", "way", "well", "sure", "definitely", "totally", "great", "awesome",
	"amazing", "cool", "nice", "good", "glad", "happy", "love", "like", "know", "think", "feel",
	"felt", "see", "saw", "seen", "look", "looks", "one", "ones", "ever", "still", "even", "though",
	"us", "im", "ive", "id", "youre", "dont", "didn", "doesn", "isn", "wasn", "aren", "won", "can't",
	"u", "ur", "ya", "ok", "okay", "haha", "lol", "hmm", "mean", "say", "said", "tell", "told",
	"anyone", "someone", "everyone", "might", "may", "must", "shall", "s", "t", "ll", "re", "ve", "d", "m",
}

// timeWords mark a text that speaks about when something happened.
var timeWords = []string{
	"yesterday", "today", "tomorrow", "tonight", "ago", "last", "next", "week", "weekend", "month",
	"year", "day", "morning", "afternoon", "evening", "night", "recently", "soon", "since", "earlier",
	"later", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january",
	"february", "march", "april", "may", "june", "july", "august", "september", "october",
	"november", "december", "summer", "winter", "spring", "fall", "autumn", "christmas", "birthday",
	"anniversary", "holiday", "vacation", "before", "after", "first", "when", "date", "time",
}

// numberWords mark a text that states a quantity.
var numberWords = []string{
	"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
	"twelve", "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "million", "dozen",
	"couple", "few", "several", "once", "twice", "first", "second", "third", "half",
}

// dateWords name a date: they make a sentence worth a place in a summary.
var dateWords = []string{
	"yesterday", "tomorrow", "ago", "weekend", "monday", "tuesday", "wednesday", "thursday", "friday",
	"saturday", "sunday", "january", "february", "march", "april", "june", "july", "august",
	"september", "october", "november", "december", "christmas", "birthday", "anniversary",
}
