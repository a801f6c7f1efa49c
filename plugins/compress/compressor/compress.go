// Package compressor decides which messages of a chat history go verbatim
// into a model's context and summarises the rest, within a token budget.
//
// The decision has four parts, in this order of priority:
//
//  1. pinned system messages;
//  2. a recent window (the last few turns);
//  3. the earlier turns that matter for the new message, found by lexical
//     retrieval: BM25 over lightly stemmed terms, query bigrams, boosts for
//     names, numbers, the speaker and, for "when" questions, turns that
//     mention a time; pseudo-relevance feedback; and the neighbours of
//     relevant turns, since an answer usually follows its question;
//     turns compete for the budget by score per token^alpha, and budget
//     that nothing relevant claims goes to further recent turns;
//  4. an extractive summary of what is left out: its sentences that carry
//     names, dates, numbers or relate to the new message.
//
// Kept messages cost their given token counts. The summary's cost is
// estimated per line as the larger of the history's own tokens-per-byte
// ratio times a safety factor and the line's count of words and
// punctuation, so the whole never exceeds the budget.
//
// The package has no dependencies beyond the standard library and sdk/abi,
// compiles for GOOS=wasip1 and uses no encoding/json when deciding (only
// ParseConfig does). A Compressor is safe for concurrent use: its
// configuration is fixed by New and its only mutable state, a memo of
// message analyses and a pool of scratch space, is synchronised.
package compressor

import (
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Compressor makes compress decisions with one configuration.
type Compressor struct {
	cfg      Config
	flags    smallTable          // raw lowercase word hash -> wordFlag
	pool     sync.Pool           // *analysis scratch space, reused between decisions
	memo     *memo               // analyses of messages seen before; nil when off
	synonyms map[uint32][]uint32 // stemmed word -> stemmed expansions
}

// New returns a Compressor for cfg, which must be valid.
func New(cfg Config) (*Compressor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Compressor{
		cfg:      cfg,
		flags:    newSmallTable(512),
		synonyms: make(map[uint32][]uint32, len(cfg.Synonyms)),
	}
	for _, set := range []struct {
		words []string
		flag  wordFlag
	}{
		{defaultStopwords, flagStop},
		{cfg.ExtraStopwords, flagStop},
		{timeWords, flagTime},
		{dateWords, flagDate},
		{numberWords, flagNumber},
	} {
		for _, w := range set.words {
			h := hashString(strings.ToLower(w))
			f, _ := c.flags.get(h)
			c.flags.put(h, f|int32(set.flag))
		}
	}
	if cfg.MemoMessages > 0 {
		c.memo = newMemo(cfg.MemoMessages)
	}
	var buf []byte
	stemHash := func(s string) uint32 {
		buf = lowerInto(buf, s)
		return hashTerm(stem(buf))
	}
	addLine := func(line string) {
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return
		}
		kh := stemHash(strings.TrimSpace(line[:colon]))
		for _, v := range strings.Fields(line[colon+1:]) {
			c.synonyms[kh] = append(c.synonyms[kh], stemHash(v))
		}
	}
	if !cfg.NoLexicon {
		for _, line := range defaultLexicon {
			addLine(line)
		}
	}
	for k, vs := range cfg.Synonyms {
		kh := stemHash(k)
		for _, v := range vs {
			c.synonyms[kh] = append(c.synonyms[kh], stemHash(v))
		}
	}
	return c, nil
}

// Config returns the compressor's configuration.
func (c *Compressor) Config() Config { return c.cfg }

// wordFlag says what a word is, for the analysis.
type wordFlag uint8

const (
	flagStop   wordFlag = 1 << iota // dropped from queries and documents
	flagTime                        // speaks of a time
	flagDate                        // names a date (a summary fact)
	flagNumber                      // states a quantity
)

// fact is a word of a message that makes a sentence worth summarising: a
// number, a date or a capitalised word (kept only if rare in the history).
type fact struct {
	pos     int32  // byte offset in the message's text
	capital bool   // a capitalised word rather than a number or date
	hash    uint32 // the capitalised word's stemmed hash
}

// doc is the analysis of one message.
type doc struct {
	terms     []uint32 // content term hashes in order (a window of the shared slice)
	termPos   []int32  // byte offset in the text of each term
	facts     []fact
	sents     []sentence
	speaker   uint32 // stemmed hash of the "Name:" prefix, 0 when none
	textStart int    // byte offset of the text after the speaker prefix
	hasTime   bool
	hasNumber bool
	question  bool // the message asks something
}

// queryTerm is one weighted term of the expanded query.
type queryTerm struct {
	hash   uint32
	weight float64
	idf    float64
}

// analysis is the per-decision working state.
type analysis struct {
	docs     []doc
	terms    []uint32
	termPos  []int32
	facts    []fact
	sents    []sentence
	df       dfTable
	avgLen   float64
	speakers hashSet // speakers named by "Name:" prefixes
	buf      []byte
	memoKeys []memoKey
	scores   []float64 // per message, before and after smoothing
	smoothed []float64
	memoHits []*doc // per message: its memoised analysis, or nil
}

// speakerPrefix returns the length of a leading "Name:" or "First Last:"
// prefix of s (including the colon and following space), or 0.
func speakerPrefix(s string) (nameEnd, textStart int) {
	limit := len(s)
	if limit > 40 {
		limit = 40
	}
	words := 0
	inWord := false
	for i := 0; i < limit; i++ {
		c := s[i]
		switch {
		case c == ':':
			if words == 0 || words > 3 || i+1 >= len(s) || s[i+1] != ' ' {
				return 0, 0
			}
			return i, i + 2
		case c == ' ':
			inWord = false
		case isLetter(c) || c == '-' || c == '.' || c >= 0x80:
			if !inWord {
				if !(c >= 'A' && c <= 'Z') && c < 0x80 {
					return 0, 0
				}
				words++
				inWord = true
			}
		default:
			return 0, 0
		}
	}
	return 0, 0
}

// flag returns what the lowercased word with hash h is.
func (c *Compressor) flag(h uint32) wordFlag {
	f, _ := c.flags.get(h)
	return wordFlag(f)
}

// analyse splits, stems and counts every message. The returned analysis
// comes from the pool; release gives it back. Messages seen by an earlier
// decision are taken from the memo instead of being analysed again.
func (c *Compressor) analyse(msgs []abi.Message) *analysis {
	a, _ := c.pool.Get().(*analysis)
	if a == nil {
		a = &analysis{}
	}
	a.reset(len(msgs))
	hits := c.memo.lookup(msgs, &a.memoKeys, &a.memoHits)
	total := 0
	for i := range msgs {
		d := &a.docs[i]
		if e := a.memoHits[i]; e != nil {
			a.apply(d, int32(i), e)
		} else {
			c.analyseDoc(a, d, int32(i), msgs[i].Text)
		}
		if d.speaker != 0 {
			a.speakers.add(d.speaker)
		}
		total += len(d.terms)
	}
	if hits < len(msgs) {
		c.memo.store(a)
	}
	if len(msgs) > 0 {
		a.avgLen = float64(total) / float64(len(msgs))
	}
	if a.avgLen < 1 {
		a.avgLen = 1
	}
	return a
}

// analyseDoc analyses message i, appending to the shared slices of a.
func (c *Compressor) analyseDoc(a *analysis, d *doc, i int32, text string) {
	if nameEnd, start := speakerPrefix(text); start > 0 {
		name := text[:nameEnd]
		if sp := strings.IndexByte(name, ' '); sp > 0 {
			name = name[:sp]
		}
		a.buf = lowerInto(a.buf, name)
		d.speaker = hashTerm(stem(a.buf))
		d.textStart = start
	}
	first, firstFact, firstSent := len(a.terms), len(a.facts), len(a.sents)
	body := text[d.textStart:]
	d.question = strings.IndexByte(body, '?') >= 0
	it := wordIter{s: body, sentenceStart: true, track: true, base: int32(d.textStart), sents: a.sents}
	flags := &c.flags
	mask := len(flags.keys) - 1
	for {
		w, ok := it.next()
		if !ok {
			break
		}
		// c.flag(it.hash), inlined: this runs for every word of the history.
		var f wordFlag
		k := it.hash
		if k == 0 {
			k = 1
		}
		for j := int((k*0x9E3779B1)>>7) & mask; flags.keys[j] != 0; j = (j + 1) & mask {
			if flags.keys[j] == k {
				f = wordFlag(flags.vals[j])
				break
			}
		}
		pos := int32(d.textStart + w.start)
		if w.digit {
			d.hasNumber = true
			if w.end-w.start == 4 && (body[w.start] == '1' || body[w.start] == '2') {
				d.hasTime = true // a year
			}
			a.facts = append(a.facts, fact{pos: pos})
		}
		if f&flagTime != 0 {
			d.hasTime = true
		}
		if f&flagNumber != 0 {
			d.hasNumber = true
		}
		if f&flagDate != 0 {
			a.facts = append(a.facts, fact{pos: pos})
		}
		if f&flagStop != 0 {
			continue
		}
		a.buf = lowerInto(a.buf, body[w.start:w.end])
		h := hashTerm(stem(a.buf))
		if w.capital && !w.digit && w.end-w.start >= 3 && f&flagDate == 0 {
			a.facts = append(a.facts, fact{pos: pos, capital: true, hash: h})
		}
		a.terms = append(a.terms, h)
		a.termPos = append(a.termPos, pos)
		a.df.add(h, i)
	}
	a.sents = it.sents
	d.terms = a.terms[first:len(a.terms):len(a.terms)]
	d.termPos = a.termPos[first:len(a.termPos):len(a.termPos)]
	d.facts = a.facts[firstFact:len(a.facts):len(a.facts)]
	d.sents = a.sents[firstSent:len(a.sents):len(a.sents)]
}

// apply copies a memoised message analysis into a as message i.
func (a *analysis) apply(d *doc, i int32, e *doc) {
	first, firstFact, firstSent := len(a.terms), len(a.facts), len(a.sents)
	a.terms = append(a.terms, e.terms...)
	a.termPos = append(a.termPos, e.termPos...)
	a.facts = append(a.facts, e.facts...)
	a.sents = append(a.sents, e.sents...)
	*d = doc{
		speaker:   e.speaker,
		textStart: e.textStart,
		hasTime:   e.hasTime,
		hasNumber: e.hasNumber,
		question:  e.question,
		terms:     a.terms[first:len(a.terms):len(a.terms)],
		termPos:   a.termPos[first:len(a.termPos):len(a.termPos)],
		facts:     a.facts[firstFact:len(a.facts):len(a.facts)],
		sents:     a.sents[firstSent:len(a.sents):len(a.sents)],
	}
	for _, h := range d.terms {
		a.df.add(h, i)
	}
}

// reset empties the scratch space for a history of n messages.
func (a *analysis) reset(n int) {
	if cap(a.docs) < n {
		a.docs = make([]doc, n)
	}
	a.docs = a.docs[:n]
	clear(a.docs)
	if cap(a.terms) < n*24 {
		a.terms = make([]uint32, 0, n*24)
		a.termPos = make([]int32, 0, n*24)
	}
	a.terms, a.termPos, a.facts, a.sents = a.terms[:0], a.termPos[:0], a.facts[:0], a.sents[:0]
	a.df.reset(n * 6)
	if cap(a.memoHits) < n {
		a.memoHits = make([]*doc, n)
		a.memoKeys = make([]memoKey, n)
	}
	a.memoHits, a.memoKeys = a.memoHits[:n], a.memoKeys[:n]
	clear(a.memoHits)
	a.speakers = a.speakers[:0]
}

// release returns the scratch space to the pool.
func (c *Compressor) release(a *analysis) { c.pool.Put(a) }

// queryInfo is the analysed new message.
type queryInfo struct {
	terms    []queryTerm
	bigrams  map[uint32]float64
	speakers hashSet
	temporal bool
	numeric  bool
}

func (c *Compressor) analyseQuery(q string, a *analysis) *queryInfo {
	qi := &queryInfo{bigrams: make(map[uint32]float64, 8)}
	n := float64(len(a.docs))
	idf := func(h uint32) float64 {
		df := float64(a.df.get(h))
		return math.Log(1 + (n-df+0.5)/(df+0.5))
	}
	index := make(map[uint32]int, 16)
	add := func(h uint32, w float64) {
		if j, ok := index[h]; ok {
			if w > qi.terms[j].weight {
				qi.terms[j].weight = w
			}
			return
		}
		index[h] = len(qi.terms)
		qi.terms = append(qi.terms, queryTerm{hash: h, weight: w, idf: idf(h)})
	}
	var prev uint32
	var prevRaw string
	splitWords(q, func(w word) {
		raw := q[w.start:w.end]
		a.buf = lowerInto(a.buf, raw)
		lower := string(a.buf)
		switch lower {
		case "when":
			qi.temporal = true
		case "year", "month", "date", "day", "time", "week", "long", "ago":
			if prevRaw == "what" || prevRaw == "which" || prevRaw == "how" || lower == "ago" {
				qi.temporal = true
			}
		case "many", "much", "old", "often":
			if prevRaw == "how" {
				qi.numeric = true
			}
		}
		prevRaw = lower
		if c.flag(hashTerm(a.buf))&flagStop != 0 {
			prev = 0
			return
		}
		h := hashTerm(stem(a.buf))
		if a.speakers.has(h) {
			qi.speakers.add(h)
			prev = 0
			return
		}
		weight := 1.0
		if w.capital || w.digit {
			weight += c.cfg.EntityBoost
		}
		add(h, weight)
		for _, s := range c.synonyms[h] {
			add(s, c.cfg.SynonymWeight)
		}
		if prev != 0 {
			x, y := prev, h
			if x > y {
				x, y = y, x
			}
			qi.bigrams[pairHash(x, y)] = c.cfg.BigramWeight * (idf(prev) + idf(h)) / 2
		}
		prev = h
	})
	return qi
}

// scoreAll writes the BM25-plus-boosts score of every document into out.
func (c *Compressor) scoreAll(a *analysis, qi *queryInfo, out []float64) {
	k1, b := c.cfg.K1, c.cfg.B
	index := newSmallTable(len(qi.terms))
	for j, t := range qi.terms {
		index.put(t.hash, int32(j))
	}
	mask := len(index.keys) - 1
	tf := make([]int32, len(qi.terms))
	touched := make([]int32, 0, 16)
	for i := range a.docs {
		d := &a.docs[i]
		s := 0.0
		touched = touched[:0]
		prevHit := false
		for k, h := range d.terms {
			// index.get(h), inlined: this runs for every term of the history.
			kh := h
			if kh == 0 {
				kh = 1
			}
			j := int32(-1)
			for x := int((kh*0x9E3779B1)>>7) & mask; index.keys[x] != 0; x = (x + 1) & mask {
				if index.keys[x] == kh {
					j = index.vals[x]
					break
				}
			}
			if j < 0 {
				prevHit = false
				continue
			}
			if tf[j] == 0 {
				touched = append(touched, j)
			}
			tf[j]++
			// A bigram needs both words in the query: look it up only then.
			if prevHit && len(qi.bigrams) > 0 {
				x, y := d.terms[k-1], h
				if x > y {
					x, y = y, x
				}
				s += qi.bigrams[pairHash(x, y)]
			}
			prevHit = true
		}
		norm := k1 * (1 - b + b*float64(len(d.terms))/a.avgLen)
		for _, j := range touched {
			f := float64(tf[j])
			t := &qi.terms[j]
			s += t.weight * t.idf * f * (k1 + 1) / (f + norm)
			tf[j] = 0
		}
		if s > 0 {
			if d.speaker != 0 && qi.speakers.has(d.speaker) {
				s *= 1 + c.cfg.SpeakerBoost
			}
			if qi.temporal && d.hasTime {
				s *= 1 + c.cfg.TemporalBoost
			}
			if qi.numeric && d.hasNumber {
				s *= 1 + c.cfg.NumberBoost
			}
		}
		out[i] = s
	}
}

// expand adds pseudo-relevance feedback terms from the best documents.
func (c *Compressor) expand(a *analysis, qi *queryInfo, scores []float64) {
	if c.cfg.PRFDocs == 0 || c.cfg.PRFTerms == 0 || c.cfg.PRFWeight == 0 {
		return
	}
	top := topK(scores, c.cfg.PRFDocs)
	if len(top) == 0 {
		return
	}
	inQuery := make(map[uint32]struct{}, len(qi.terms))
	for _, t := range qi.terms {
		inQuery[t.hash] = struct{}{}
	}
	n := float64(len(a.docs))
	acc := make(map[uint32]float64, 64)
	best := scores[top[0]]
	for _, i := range top {
		rel := scores[i] / best
		for _, h := range a.docs[i].terms {
			if _, ok := inQuery[h]; ok {
				continue
			}
			df := float64(a.df.get(h))
			if df < 2 {
				continue // a term seen once cannot find anything new
			}
			acc[h] += rel * math.Log(1+(n-df+0.5)/(df+0.5))
		}
	}
	type cand struct {
		h uint32
		w float64
	}
	cands := make([]cand, 0, len(acc))
	for h, w := range acc {
		cands = append(cands, cand{h, w})
	}
	slices.SortFunc(cands, func(x, y cand) int {
		switch {
		case x.w != y.w:
			if x.w > y.w {
				return -1
			}
			return 1
		case x.h < y.h:
			return -1
		case x.h > y.h:
			return 1
		}
		return 0
	})
	if len(cands) > c.cfg.PRFTerms {
		cands = cands[:c.cfg.PRFTerms]
	}
	if len(cands) == 0 {
		return
	}
	maxW := cands[0].w
	for _, cd := range cands {
		df := float64(a.df.get(cd.h))
		qi.terms = append(qi.terms, queryTerm{
			hash:   cd.h,
			weight: c.cfg.PRFWeight * cd.w / maxW,
			idf:    math.Log(1 + (n-df+0.5)/(df+0.5)),
		})
	}
}

// topK returns the indexes of the k highest positive scores, best first.
func topK(scores []float64, k int) []int {
	idx := make([]int, 0, k+1)
	for i, s := range scores {
		if s <= 0 {
			continue
		}
		if len(idx) == k && s <= scores[idx[k-1]] {
			continue
		}
		j := len(idx)
		if j < k {
			idx = append(idx, i)
		} else {
			j = k - 1
		}
		for j > 0 && scores[idx[j-1]] < s {
			idx[j] = idx[j-1]
			j--
		}
		idx[j] = i
	}
	return idx
}

// Compress decides what of req's history to keep. It never fails: empty
// or odd input yields an empty decision.
func (c *Compressor) Compress(req *abi.CompressRequest) abi.CompressDecision {
	msgs := req.Messages
	budget := int64(req.BudgetTokens)
	var total int64
	for i := range msgs {
		total += int64(msgs[i].Tokens)
	}
	if total <= budget {
		keep := make([]uint32, len(msgs))
		for i := range keep {
			keep[i] = uint32(i)
		}
		return abi.CompressDecision{Keep: keep, Tokens: uint32(total)}
	}
	kept := make([]bool, len(msgs))
	var used int64
	keepMsg := func(i int, limit int64) bool {
		t := int64(msgs[i].Tokens)
		if kept[i] || used+t > limit {
			return false
		}
		kept[i] = true
		used += t
		return true
	}

	// 1. Pinned system messages.
	if c.cfg.PinSystem {
		for i := range msgs {
			if msgs[i].Role == abi.RoleSystem {
				keepMsg(i, budget)
			}
		}
	}

	// 2. The recent window.
	recentLimit := used + int64(c.cfg.RecentFraction*float64(budget))
	turns := 0
	for i := len(msgs) - 1; i >= 0 && turns < c.cfg.RecentMaxTurns; i-- {
		if kept[i] {
			continue
		}
		limit := recentLimit
		if turns < c.cfg.RecentMinTurns {
			limit = budget
		}
		if !keepMsg(i, limit) {
			break
		}
		turns++
	}

	// 3. Retrieval within what the summary leaves.
	// The summary's reserve: its share of the budget, at least
	// SummaryMinTokens (a line or two) but never a quarter of the budget.
	reserve := int64(c.cfg.SummaryFraction * float64(budget))
	if reserve > int64(c.cfg.SummaryMaxTokens) {
		reserve = int64(c.cfg.SummaryMaxTokens)
	}
	if reserve < int64(c.cfg.SummaryMinTokens) && c.cfg.SummaryFraction > 0 {
		reserve = int64(c.cfg.SummaryMinTokens)
	}
	if reserve > budget/4 {
		reserve = 0
	}
	a, scores, smoothed := c.score(msgs, req.Query)
	c.retrieve(msgs, smoothed, kept, &used, budget-reserve)
	if c.cfg.FillRecent {
		for i := len(msgs) - 1; i >= 0 && used < budget-reserve; i-- {
			if !kept[i] {
				keepMsg(i, budget-reserve)
			}
		}
	}

	// 4. The summary of the rest.
	summary, cost := c.summarise(msgs, a, scores, kept, budget-used)
	c.release(a)
	d := abi.CompressDecision{Summary: summary, Tokens: uint32(used + cost)}
	for i, k := range kept {
		if k {
			d.Keep = append(d.Keep, uint32(i))
		}
	}
	return d
}

// score analyses the history and returns each message's relevance to the
// query, before and after neighbour smoothing.
func (c *Compressor) score(msgs []abi.Message, query string) (a *analysis, scores, smoothed []float64) {
	a = c.analyse(msgs)
	qi := c.analyseQuery(query, a)
	scores = resize(a.scores, len(msgs))
	a.scores = scores
	if len(qi.terms) > 0 {
		c.scoreAll(a, qi, scores)
		c.expand(a, qi, scores)
		c.scoreAll(a, qi, scores)
	}
	return a, scores, c.smooth(a, scores)
}

// smooth adds to each score a share of its neighbours' scores.
func (c *Compressor) smooth(a *analysis, scores []float64) []float64 {
	out := resize(a.smoothed, len(scores))
	a.smoothed = out
	copy(out, scores)
	if c.cfg.AnswerWeight > 0 {
		for i := 1; i < len(scores); i++ {
			if a.docs[i-1].question {
				out[i] += c.cfg.AnswerWeight * scores[i-1]
			}
		}
	}
	if c.cfg.NeighborWeight == 0 || c.cfg.NeighborSpan == 0 {
		return out
	}
	for i := range scores {
		w := c.cfg.NeighborWeight
		for d := 1; d <= c.cfg.NeighborSpan; d++ {
			best := 0.0
			if i-d >= 0 {
				best = scores[i-d]
			}
			if i+d < len(scores) && scores[i+d] > best {
				best = scores[i+d]
			}
			out[i] += w * best
			w *= c.cfg.NeighborDecay
		}
	}
	return out
}

// retrieve keeps the best-priority messages that fit under limit, pulling
// in the close neighbours of each.
func (c *Compressor) retrieve(msgs []abi.Message, smoothed []float64, kept []bool, used *int64, limit int64) {
	maxScore := 0.0
	for _, s := range smoothed {
		if s > maxScore {
			maxScore = s
		}
	}
	if maxScore == 0 {
		return
	}
	floor := c.cfg.MinScore * maxScore
	type cand struct {
		i int
		p float64
	}
	cands := make([]cand, 0, len(msgs))
	for i, s := range smoothed {
		if kept[i] || s <= 0 || s < floor {
			continue
		}
		p := s
		if c.cfg.LengthAlpha > 0 {
			p = s / math.Pow(float64(msgs[i].Tokens)+c.cfg.LengthOffset, c.cfg.LengthAlpha)
		}
		cands = append(cands, cand{i, p})
	}
	slices.SortFunc(cands, func(x, y cand) int {
		switch {
		case x.p > y.p:
			return -1
		case x.p < y.p:
			return 1
		}
		return y.i - x.i
	})
	take := func(i int) bool {
		t := int64(msgs[i].Tokens)
		if kept[i] || *used+t > limit {
			return false
		}
		kept[i] = true
		*used += t
		return true
	}
	for _, cd := range cands {
		if *used >= limit {
			break
		}
		if !take(cd.i) {
			continue
		}
		if c.cfg.NeighborPull > 0 {
			s := smoothed[cd.i]
			for _, j := range [2]int{cd.i + 1, cd.i - 1} {
				if j >= 0 && j < len(msgs) && !kept[j] && smoothed[j] >= c.cfg.NeighborPull*s {
					take(j)
				}
			}
		}
	}
}

// resize returns s with length n and every element zero, reusing its
// storage when large enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
