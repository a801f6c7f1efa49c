package policy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/sdk/abi"
)

// logBucket is a version's output quota across calls and instances: a
// token bucket of burst bytes refilled at rate bytes a second. Only guest
// output takes from it, so a mutex is cheap enough.
type logBucket struct {
	mu     sync.Mutex
	tokens float64
	last   int64 // nanotime of the last refill
	rate   float64
	burst  float64
}

func newLogBucket(rate, burst int) *logBucket {
	return &logBucket{tokens: float64(burst), rate: float64(rate), burst: float64(burst)}
}

// take removes up to n tokens and returns how many it removed.
func (b *logBucket) take(n int, now int64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last != 0 && now > b.last {
		b.tokens = min(b.burst, b.tokens+float64(now-b.last)*b.rate/1e9)
	}
	b.last = now
	got := min(float64(n), b.tokens)
	if got < 1 {
		return 0
	}
	b.tokens -= float64(int(got))
	return int(got)
}

// CallBuckets are the upper bounds of the call-time histogram
// (decision.CallBuckets, shared with the exported metrics).
var CallBuckets = decision.CallBuckets

// callHistogram counts calls by duration; counts[len(CallBuckets)] is the
// overflow bucket. The largest duration is kept too.
type callHistogram struct {
	counts [len(CallBuckets) + 1]atomic.Int64
	sum    atomic.Int64
	max    atomic.Int64
}

func (h *callHistogram) observe(d int64) {
	i := 0
	for i < len(CallBuckets) && d > int64(CallBuckets[i]) {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(d)
	for {
		m := h.max.Load()
		if d <= m || h.max.CompareAndSwap(m, d) {
			return
		}
	}
}

// CallHistogram is a snapshot of a version's call durations: Counts[i]
// calls took at most CallBuckets[i] (and more than the bound before);
// the last count is the calls above the last bound.
type CallHistogram struct {
	Counts [len(CallBuckets) + 1]int64
	Sum    time.Duration
	Max    time.Duration
}

func (h *callHistogram) snapshot() CallHistogram {
	var s CallHistogram
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	s.Max = time.Duration(h.max.Load())
	return s
}

// Quantile returns the upper bound of the bucket holding quantile q of
// the calls (the largest duration for the overflow bucket), or 0 with no
// calls.
func (s CallHistogram) Quantile(q float64) time.Duration {
	var total int64
	for _, c := range s.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen int64
	for i, c := range s.Counts {
		seen += c
		if seen >= rank {
			if i < len(CallBuckets) {
				return min(CallBuckets[i], s.Max)
			}
			return s.Max
		}
	}
	return s.Max
}

// ResourceObserver is an optional extension of Observer: when the
// Runtime's Observer implements it, it also receives every call into a
// guest and the guest output the quotas let through or dropped, for the
// per-policy resource metrics.
type ResourceObserver interface {
	// PolicyCall reports one decision call into a version: its duration
	// as the host measured it (from arming the deadline to the guest's
	// return) and its outcome.
	PolicyCall(kind abi.Kind, policy, version string, d time.Duration, outcome Outcome)
	// GuestOutput reports bytes of guest output (log calls, stdout and
	// stderr) written to the log and dropped by the quotas.
	GuestOutput(policy, version string, written, dropped int)
	// PolicyMemory reports an instance's linear memory after a call, in
	// bytes, whenever it differs from what the instance had before.
	PolicyMemory(policy, version string, bytes int64)
}
