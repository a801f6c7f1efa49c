package router

import (
	"strings"
	"sync"
)

// The lexicons below are written from general knowledge of what makes a
// request hard for a small model (maths, code, reasoning, several steps)
// and of what small talk looks like. They feed the dense features; the
// learned weights decide how much each one counts. An entry is one word
// or two (a bigram, matched on consecutive tokens); apostrophes are
// dropped as the tokenizer drops them.
var lexicons = []struct {
	class uint16
	words string
}{
	{lexMath, `calculate compute computing solve solving equation equations integral integrals
		derivative derivatives differentiate integrate probability probabilities percent percentage
		sum product average mean median mode ratio fraction fractions algebra algebraic geometry
		theorem lemma matrix matrices vector vectors polynomial logarithm exponent exponential sqrt
		factorial prime primes integer integers divisible remainder multiply multiplied divide
		divided minus plus total perimeter radius diameter circumference velocity acceleration
		maximize minimize maximum minimum variance deviation statistics statistical regression
		convergence converge series sequence modulo inequality quadratic linear cubic calculus
		trigonometry sine cosine tangent hypotenuse triangle angle angles simplify evaluate
		coefficient coefficients expected value how many how much per cent numerator denominator
		digits digit odd even arithmetic infinity infinite finite asymptotic estimate optimum`},
	{lexCode, `code coding function functions python javascript typescript java golang rust cpp
		sql query queries regex api bug bugs debug debugging error errors exception exceptions
		compile compiler compiles runtime algorithm algorithms class classes method methods
		variable variables array arrays string strings loop loops recursion recursive script
		program programming implement implementation refactor database json html css docker
		kubernetes git linux bash shell stack trace null pointer pointers thread threads async
		await def return const var func import lambda struct segfault unit test tests library
		framework endpoint http server backend frontend react node npm pip binary hash hashmap
		complexity big o memory leak deadlock concurrency parse parser syntax`},
	{lexReason, `why explain explanation explanations analyze analyse analysis compare comparison
		contrast differences distinguish justify prove proof reasoning reason logic logical argue argument arguments
		implication implications consequence consequences tradeoff tradeoffs trade off pros cons
		critique critically assess infer deduce hypothesis derive difference between what if
		paradox cause causes evidence counterargument evaluate whether interpret interpretation
		ethical ethics philosophical dilemma assumption assumptions hypothetical scenario
		scenarios predict mechanism underlying fundamentally rigorous nuanced riddle puzzle
		puzzles counterintuitive contradiction`},
	{lexStep, `step by steps first then finally next afterwards plan outline detailed each both
		additionally include including ensure format table summarize summarise rewrite translate
		convert make sure requirements constraints bullet bullets sections section paragraph
		paragraphs itemize list following given below above provide design create build
		develop structure organize organise schedule itinerary exactly must constraint
		at least at most no more without using`},
	{lexCreative, `write story poem essay letter email draft lyrics song article blog speech toast
		haiku limerick novel character characters dialogue compose fiction plot narrative
		screenplay sonnet slogan tagline`},
	{lexAdvice, `how do how can how should should i what should any tips tips advice help me
		suggest suggestions recommend recommendation how to is it what do ways to best way
		improve better confidence nervous anxious approach`},
	{lexChat, `hi hello hey hiya heya yo sup howdy greetings thanks thank thx ty cheers ok okay k kk
		cool great nice awesome perfect sure yes yeah yep yup no nope nah maybe lol lmao haha
		hahaha hehe bye goodbye goodnight morning night evening afternoon good fine alright
		got it sounds good you too see you how are are you welcome wow oh ah hmm np gotcha noted
		agreed appreciate appreciated amazing excellent wonderful fantastic brilliant sweet neat
		understood right true indeed absolutely definitely exactly totally fair enough
		makes sense no problem of course sorry oops whatever later ttyl brb gm gn`},
	{lexGlue, `i im ive me my you your youre it its that thats this is was so very too really
		all just a an the and but much well pretty same again for a lot then now will ill
		do does did be been am are we were us our they them there here what whats one`},
}

// lexBits sets the size of the lexicon table (1 << lexBits slots). The
// table is direct-mapped: init picks a multiplier under which no two
// entries share a slot, so a lookup is one multiply, one load and one
// compare, with no probing loop (cheap inside WebAssembly, where the
// tokenizer spends most of a decision).
const lexBits = 15

var (
	lexKeys [1 << lexBits]uint32
	lexVals [1 << lexBits]uint16
	lexMul  uint32
)

// lexOnce builds the table on first use (New, Extract) rather than at
// package initialisation: a module that bundles this package with other
// policies pays for it only in the instances that route.
var lexOnce sync.Once

func buildLexicon() {
	type entry struct {
		h     uint32
		class uint16
	}
	merged := map[uint32]uint16{}
	var order []uint32
	for _, l := range lexicons {
		for _, e := range splitEntries(l.words) {
			h := entryHash(e)
			if _, ok := merged[h]; !ok {
				order = append(order, h)
			}
			merged[h] |= l.class
			// The first word of a phrase is marked, so that the bigram
			// is only looked up after such a word.
			if head, _, ok := strings.Cut(e, " "); ok {
				hh := entryHash(head)
				if _, ok := merged[hh]; !ok {
					order = append(order, hh)
				}
				merged[hh] |= lexHead
			}
		}
	}
	for mul := uint32(0x9e3779b1); ; mul += 2 {
		clear(lexKeys[:])
		ok := true
		for _, h := range order {
			s := lexSlot(h, mul)
			if lexKeys[s] != 0 {
				ok = false
				break
			}
			lexKeys[s] = h
		}
		if ok {
			lexMul = mul
			for _, h := range order {
				lexVals[lexSlot(h, mul)] = merged[h]
			}
			return
		}
	}
}

func lexSlot(h, mul uint32) uint32 { return h * mul >> (32 - lexBits) }

// splitEntries splits a lexicon into entries: single words, except that
// the known two-word phrases are kept together. Two-word phrases are
// written adjacent; a phrase is recognised when it is in phrases.
func splitEntries(s string) []string {
	f := strings.Fields(s)
	var out []string
	for i := 0; i < len(f); i++ {
		if i+1 < len(f) && phrases[f[i]+" "+f[i+1]] {
			out = append(out, f[i]+" "+f[i+1])
			i++
			continue
		}
		out = append(out, f[i])
	}
	return out
}

// phrases are the two-word lexicon entries.
var phrases = map[string]bool{
	"how many": true, "how much": true, "expected value": true, "per cent": true,
	"stack trace": true, "unit test": true, "big o": true, "memory leak": true,
	"trade off": true, "difference between": true, "what if": true,
	"step by": true, "make sure": true, "at least": true, "at most": true, "no more": true,
	"without using": true,
	"how do":        true, "how can": true, "how should": true, "should i": true, "what should": true,
	"any tips": true, "help me": true, "how to": true, "is it": true, "what do": true,
	"ways to": true, "best way": true,
	"got it": true, "sounds good": true, "you too": true, "see you": true, "how are": true,
	"are you": true, "fair enough": true, "makes sense": true, "no problem": true,
	"of course": true, "a lot": true,
}

// tokenHash is the hash Extract computes for one lower-case token.
func tokenHash(w string) uint32 {
	h := uint32(fnvOffset)
	for i := 0; i < len(w); i++ {
		if w[i] == '\'' {
			continue
		}
		h = (h ^ uint32(lower(w[i]))) * fnvPrime
	}
	return h
}

// entryHash is the token or bigram hash of a lexicon entry, never 0 (the
// empty slot).
func entryHash(entry string) uint32 {
	var h uint32
	if a, b, ok := strings.Cut(entry, " "); ok {
		h = pairHash(tokenHash(a), tokenHash(b))
	} else {
		h = tokenHash(entry)
	}
	if h == 0 {
		h = 1
	}
	return h
}

// lookupLex returns the lexicon classes of a token or bigram hash.
func lookupLex(h uint32) uint16 {
	s := lexSlot(h, lexMul)
	if lexKeys[s] != h || h == 0 {
		return 0
	}
	return lexVals[s]
}
