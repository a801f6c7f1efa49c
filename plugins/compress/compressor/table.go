package compressor

// dfTable counts, for each term hash, the number of documents holding it.
// It is an open-addressing hash table: a decision inserts every word of
// the history, and Go's general map spends most of the analysis time there.
type dfTable struct {
	keys []uint32 // 0 marks an empty slot; hash 0 is stored as 1
	df   []int32
	last []int32 // the last document counted, so a repeat is not
	n    int
}

func newDFTable(hint int) dfTable {
	size := 64
	for size < 2*hint {
		size <<= 1
	}
	return dfTable{keys: make([]uint32, size), df: make([]int32, size), last: make([]int32, size)}
}

// reset empties the table, sized for about hint distinct terms.
func (t *dfTable) reset(hint int) {
	size := 64
	for size < 2*hint {
		size <<= 1
	}
	if len(t.keys) < size {
		*t = newDFTable(hint)
		return
	}
	clear(t.keys)
	t.n = 0
}

func (t *dfTable) slot(h uint32) int {
	if h == 0 {
		h = 1
	}
	mask := len(t.keys) - 1
	i := int((h*0x9E3779B1)>>7) & mask
	for t.keys[i] != 0 && t.keys[i] != h {
		i = (i + 1) & mask
	}
	return i
}

// add counts h once for document doc.
func (t *dfTable) add(h uint32, doc int32) {
	if h == 0 {
		h = 1
	}
	i := t.slot(h)
	if t.keys[i] == 0 {
		t.keys[i] = h
		t.df[i] = 1
		t.last[i] = doc
		t.n++
		if 2*t.n > len(t.keys) {
			t.grow()
		}
		return
	}
	if t.last[i] != doc {
		t.last[i] = doc
		t.df[i]++
	}
}

// get returns the document frequency of h.
func (t *dfTable) get(h uint32) int32 {
	if h == 0 {
		h = 1
	}
	i := t.slot(h)
	if t.keys[i] == 0 {
		return 0
	}
	return t.df[i]
}

func (t *dfTable) grow() {
	old := *t
	*t = dfTable{keys: make([]uint32, 2*len(old.keys)), df: make([]int32, 2*len(old.keys)), last: make([]int32, 2*len(old.keys)), n: old.n}
	for j, k := range old.keys {
		if k != 0 {
			i := t.slot(k)
			t.keys[i], t.df[i], t.last[i] = k, old.df[j], old.last[j]
		}
	}
}

// smallTable maps uint32 keys to int32 values with open addressing. It
// holds the word flags and the query's terms, which every word of the
// history is looked up in; Go's general map is several times slower at
// that, most of all when compiled to WebAssembly.
type smallTable struct {
	keys []uint32 // 0 marks an empty slot; key 0 is stored as 1
	vals []int32
	n    int
}

func newSmallTable(hint int) smallTable {
	size := 16
	for size < 2*hint {
		size <<= 1
	}
	return smallTable{keys: make([]uint32, size), vals: make([]int32, size)}
}

func (t *smallTable) slot(k uint32) int {
	mask := len(t.keys) - 1
	i := int((k*0x9E3779B1)>>7) & mask
	for t.keys[i] != 0 && t.keys[i] != k {
		i = (i + 1) & mask
	}
	return i
}

// get returns the value of k and whether it is present.
func (t *smallTable) get(k uint32) (int32, bool) {
	if len(t.keys) == 0 {
		return 0, false
	}
	if k == 0 {
		k = 1
	}
	i := t.slot(k)
	return t.vals[i], t.keys[i] != 0
}

// put sets the value of k.
func (t *smallTable) put(k uint32, v int32) {
	if k == 0 {
		k = 1
	}
	if 2*(t.n+1) > len(t.keys) {
		t.grow()
	}
	i := t.slot(k)
	if t.keys[i] == 0 {
		t.keys[i] = k
		t.n++
	}
	t.vals[i] = v
}

func (t *smallTable) grow() {
	old := *t
	size := 2 * len(old.keys)
	if size < 16 {
		size = 16
	}
	*t = smallTable{keys: make([]uint32, size), vals: make([]int32, size), n: old.n}
	for j, k := range old.keys {
		if k != 0 {
			i := t.slot(k)
			t.keys[i], t.vals[i] = k, old.vals[j]
		}
	}
}

// hashSet is a set of a few hashes (the speakers of a conversation),
// searched linearly: faster than a map for the handful it holds.
type hashSet []uint32

func (s hashSet) has(h uint32) bool {
	for _, x := range s {
		if x == h {
			return true
		}
	}
	return false
}

// maxSpeakers bounds a hashSet, so a history where every message starts
// with a different "Word:" cannot make lookups quadratic.
const maxSpeakers = 32

func (s *hashSet) add(h uint32) {
	if len(*s) < maxSpeakers && !s.has(h) {
		*s = append(*s, h)
	}
}
