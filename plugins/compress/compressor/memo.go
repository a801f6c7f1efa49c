package compressor

import (
	"sync"

	"github.com/wingman-app/wingate/sdk/abi"
)

// memo keeps the analysis of messages across decisions. A chat sends its
// whole history with every new message, so all but the last few messages
// of a decision were analysed by an earlier one; hashing a message's text
// is several times cheaper than splitting and stemming it again. The memo
// holds at most limit messages and is emptied when full: a simple bound
// that keeps a long-lived instance's memory flat.
type memo struct {
	mu    sync.Mutex
	m     map[memoKey]*doc
	limit int
}

// memoKey identifies a message by its text: a 64-bit FNV-1a hash and the
// length, so that a collision needs two texts of equal length and hash.
type memoKey struct {
	hash uint64
	size int
}

func newMemo(limit int) *memo {
	return &memo{m: make(map[memoKey]*doc, limit), limit: limit}
}

func keyOf(text string) memoKey {
	h := uint64(14695981039346656037)
	for i := 0; i < len(text); i++ {
		h ^= uint64(text[i])
		h *= 1099511628211
	}
	return memoKey{hash: h, size: len(text)}
}

// lookup fills keys and hits for msgs and returns the number of hits. A
// nil memo finds nothing.
func (m *memo) lookup(msgs []abi.Message, keys *[]memoKey, hits *[]*doc) int {
	if m == nil {
		return len(msgs)
	}
	for i := range msgs {
		(*keys)[i] = keyOf(msgs[i].Text)
	}
	n := 0
	m.mu.Lock()
	for i, k := range *keys {
		if e, ok := m.m[k]; ok {
			(*hits)[i] = e
			n++
		}
	}
	m.mu.Unlock()
	return n
}

// store memoises the analyses of a's messages that were not hits. The
// entries own copies of their slices: a's buffers are reused.
func (m *memo) store(a *analysis) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range a.docs {
		if a.memoHits[i] != nil {
			continue
		}
		if len(m.m) >= m.limit {
			clear(m.m)
		}
		d := a.docs[i]
		d.terms = append([]uint32(nil), d.terms...)
		d.termPos = append([]int32(nil), d.termPos...)
		d.facts = append([]fact(nil), d.facts...)
		d.sents = append([]sentence(nil), d.sents...)
		m.m[a.memoKeys[i]] = &d
	}
}
