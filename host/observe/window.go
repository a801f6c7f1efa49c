package observe

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Rolling windows keep the recent past in process, for the dashboard and
// the alerts: what Prometheus would compute with rate() and
// histogram_quantile(), available without a Prometheus.
//
// Each window is two rings of slots: 60 one-second slots (the last minute,
// and per-second rates for charts) and 30 ten-second slots (the last five
// minutes). A slot is claimed by the period it holds; the first write of a
// new period clears it. Writers touch only atomics, except for that one
// clear per slot and period, which takes a mutex.

const (
	fineSlots    = 60
	fineRes      = int64(time.Second)
	coarseSlots  = 30
	coarseRes    = 10 * int64(time.Second)
	maxWindow    = coarseSlots * time.Duration(coarseRes)
	fineWindow   = fineSlots * time.Duration(fineRes)
	subBits      = 3
	subCount     = 1 << subBits
	maxExp       = 40 // 2^40 ns is about 18 minutes
	numBuckets   = (maxExp - subBits + 2) * subCount
	maxBucketIdx = numBuckets - 1
)

// bucketOf maps a duration in nanoseconds to a log-linear bucket: eight
// buckets per power of two, so a quantile read back from the bucket's
// midpoint is within about 6% of the true value.
func bucketOf(ns int64) int {
	if ns < subCount {
		if ns < 0 {
			return 0
		}
		return int(ns)
	}
	e := bits.Len64(uint64(ns)) - 1
	if e > maxExp {
		return maxBucketIdx
	}
	sub := int(uint64(ns)>>(e-subBits)) & (subCount - 1)
	return (e-subBits+1)*subCount + sub
}

// bucketBounds returns bucket i's lower bound and width in nanoseconds.
func bucketBounds(i int) (lo, width float64) {
	if i < subCount {
		return float64(i), 1
	}
	e := i/subCount + subBits - 1
	sub := i % subCount
	return float64(uint64(subCount+sub) << (e - subBits)), float64(uint64(1) << (e - subBits))
}

// histSlot is one period's histogram. The count is the sum of the
// buckets, computed when read, so that a write is one atomic add (two
// for a failure).
type histSlot struct {
	period atomic.Int64 // period number + 1; 0 means never used
	errs   atomic.Uint64
	b      [numBuckets]atomic.Uint32
}

type histRing struct {
	res   int64
	mu    sync.Mutex
	slots []histSlot
}

func (r *histRing) slot(nowNS int64) *histSlot {
	p := nowNS/r.res + 1
	s := &r.slots[p%int64(len(r.slots))]
	if s.period.Load() != p {
		r.mu.Lock()
		if s.period.Load() != p {
			s.errs.Store(0)
			for i := range s.b {
				s.b[i].Store(0)
			}
			s.period.Store(p)
		}
		r.mu.Unlock()
	}
	return s
}

// Latency is a rolling window of durations (and error flags) of one series,
// such as one route. It is safe for concurrent use; Record does not
// allocate.
type Latency struct {
	fine   histRing
	coarse histRing
	// coarseOnly windows keep only the ten-second slots: half the cost
	// per record, for series whose windows need no finer grain.
	coarseOnly bool
}

// NewLatency returns an empty window.
func NewLatency() *Latency {
	return &Latency{
		fine:   histRing{res: fineRes, slots: make([]histSlot, fineSlots)},
		coarse: histRing{res: coarseRes, slots: make([]histSlot, coarseSlots)},
	}
}

// newCoarseLatency returns an empty window of ten-second slots only:
// windows are whole ten-second periods (the current one included) and
// PerSecond reports nothing.
func newCoarseLatency() *Latency {
	return &Latency{
		fine:       histRing{res: fineRes, slots: make([]histSlot, 1)},
		coarse:     histRing{res: coarseRes, slots: make([]histSlot, coarseSlots)},
		coarseOnly: true,
	}
}

// Record adds one observation made at now.
func (l *Latency) Record(now time.Time, d time.Duration, failed bool) {
	t := now.UnixNano()
	b := bucketOf(int64(d))
	s := l.coarse.slot(t)
	s.b[b].Add(1)
	if failed {
		s.errs.Add(1)
	}
	if l.coarseOnly {
		return
	}
	s = l.fine.slot(t)
	s.b[b].Add(1)
	if failed {
		s.errs.Add(1)
	}
}

// LatencyStats summarises a window.
type LatencyStats struct {
	Count  uint64  `json:"count"`
	Errors uint64  `json:"errors"`
	Rate   float64 `json:"rate"` // observations per second over the window
	P50    float64 `json:"p50"`  // seconds
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
}

// Stats summarises the observations of the last window (at most five
// minutes; up to one minute at one-second resolution, beyond at ten).
func (l *Latency) Stats(now time.Time, window time.Duration) LatencyStats {
	var merged [numBuckets]uint64
	var st LatencyStats
	r, n := l.ringFor(window)
	cur := now.UnixNano()/r.res + 1
	for i := range n {
		p := cur - int64(i)
		s := &r.slots[p%int64(len(r.slots))]
		if s.period.Load() != p {
			continue
		}
		st.Errors += s.errs.Load()
		for j := range s.b {
			if c := s.b[j].Load(); c != 0 {
				merged[j] += uint64(c)
				st.Count += uint64(c)
			}
		}
	}
	st.Rate = float64(st.Count) / window.Seconds()
	if st.Count == 0 {
		return st
	}
	st.P50 = quantile(&merged, st.Count, 0.50)
	st.P95 = quantile(&merged, st.Count, 0.95)
	st.P99 = quantile(&merged, st.Count, 0.99)
	return st
}

// PerSecond returns the number of observations in each of the last n
// seconds (n at most 60), oldest first, the current second last.
func (l *Latency) PerSecond(now time.Time, n int) []float64 {
	n = min(max(n, 0), fineSlots)
	out := make([]float64, n)
	if l.coarseOnly {
		return out
	}
	cur := now.UnixNano()/fineRes + 1
	for i := range n {
		p := cur - int64(n-1-i)
		s := &l.fine.slots[p%fineSlots]
		if s.period.Load() == p {
			var c uint64
			for j := range s.b {
				c += uint64(s.b[j].Load())
			}
			out[i] = float64(c)
		}
	}
	return out
}

// QuantileSeries returns quantile q (seconds) of each of the last n
// ten-second periods (n at most 30), oldest first; NaN where a period had
// no observation.
func (l *Latency) QuantileSeries(now time.Time, q float64, n int) []float64 {
	n = min(max(n, 0), coarseSlots)
	out := make([]float64, n)
	cur := now.UnixNano()/coarseRes + 1
	var merged [numBuckets]uint64
	for i := range n {
		p := cur - int64(n-1-i)
		s := &l.coarse.slots[p%coarseSlots]
		out[i] = math.NaN()
		if s.period.Load() != p {
			continue
		}
		var c uint64
		for j := range s.b {
			merged[j] = uint64(s.b[j].Load())
			c += merged[j]
		}
		if c == 0 {
			continue
		}
		out[i] = quantile(&merged, c, q)
	}
	return out
}

func (l *Latency) ringFor(window time.Duration) (*histRing, int) {
	if window <= fineWindow && !l.coarseOnly {
		return &l.fine, max(1, int(window/time.Duration(fineRes)))
	}
	return &l.coarse, min(coarseSlots, int((window+time.Duration(coarseRes)-1)/time.Duration(coarseRes)))
}

// quantile reads quantile q (seconds) from merged bucket counts, taking
// the midpoint of the bucket holding the rank.
func quantile(b *[numBuckets]uint64, total uint64, q float64) float64 {
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range b {
		seen += c
		if seen >= rank {
			lo, w := bucketBounds(i)
			return (lo + w/2) / 1e9
		}
	}
	return 0
}

// counterSlot holds a few counters for one period.
type counterSlot struct {
	period atomic.Int64
	v      []atomic.Uint64
}

type counterRing struct {
	res   int64
	mu    sync.Mutex
	slots []counterSlot
}

func (r *counterRing) init(res int64, n, fields int) {
	r.res = res
	r.slots = make([]counterSlot, n)
	for i := range r.slots {
		r.slots[i].v = make([]atomic.Uint64, fields)
	}
}

func (r *counterRing) slot(nowNS int64) *counterSlot {
	p := nowNS/r.res + 1
	s := &r.slots[p%int64(len(r.slots))]
	if s.period.Load() != p {
		r.mu.Lock()
		if s.period.Load() != p {
			for i := range s.v {
				s.v[i].Store(0)
			}
			s.period.Store(p)
		}
		r.mu.Unlock()
	}
	return s
}

// Counters is a rolling window of a fixed number of counters (such as
// hits, misses and stale serves of one cache tier). It is safe for
// concurrent use; Add does not allocate.
type Counters struct {
	fine       counterRing
	coarse     counterRing
	n          int
	coarseOnly bool
}

// NewCounters returns a window of n counters.
func NewCounters(n int) *Counters {
	c := &Counters{n: n}
	c.fine.init(fineRes, fineSlots, n)
	c.coarse.init(coarseRes, coarseSlots, n)
	return c
}

// newCoarseCounters returns a window of n counters in ten-second slots
// only (see newCoarseLatency).
func newCoarseCounters(n int) *Counters {
	c := &Counters{n: n, coarseOnly: true}
	c.fine.init(fineRes, 1, n)
	c.coarse.init(coarseRes, coarseSlots, n)
	return c
}

// Add adds delta to counter i at now.
func (c *Counters) Add(now time.Time, i int, delta uint64) {
	t := now.UnixNano()
	c.coarse.slot(t).v[i].Add(delta)
	if !c.coarseOnly {
		c.fine.slot(t).v[i].Add(delta)
	}
}

// Sums returns each counter's total over the last window (at most five
// minutes).
func (c *Counters) Sums(now time.Time, window time.Duration) []uint64 {
	out := make([]uint64, c.n)
	r, n := &c.fine, max(1, int(window/time.Duration(fineRes)))
	if window > fineWindow || c.coarseOnly {
		r, n = &c.coarse, min(coarseSlots, int((window+time.Duration(coarseRes)-1)/time.Duration(coarseRes)))
	}
	cur := now.UnixNano()/r.res + 1
	for i := range n {
		p := cur - int64(i)
		s := &r.slots[p%int64(len(r.slots))]
		if s.period.Load() != p {
			continue
		}
		for j := range out {
			out[j] += s.v[j].Load()
		}
	}
	return out
}
