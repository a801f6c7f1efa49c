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
