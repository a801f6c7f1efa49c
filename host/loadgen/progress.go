package loadgen

import (
	"context"
	"sync"
	"time"
)

// Progress is one live reading of a run, given to Config.Progress about
// once per Config.ProgressEvery. Rate and the percentiles are over the
// interval since the previous reading; Requests and Errors count from
// the start of the phase.
type Progress struct {
	// Phase is "warm-up" or "measured".
	Phase    string
	Elapsed  time.Duration
	Requests int64
	Errors   int64
	// Rate is requests per second over the interval.
	Rate float64
	// P50 and P99 are the interval's latencies of successful requests
	// (zero when none succeeded).
	P50, P99 time.Duration
}

// ErrorRatio is the share of requests that failed so far.
func (p Progress) ErrorRatio() float64 {
	if p.Requests == 0 {
		return 0
	}
	return float64(p.Errors) / float64(p.Requests)
}

// liveStats is what one worker saw since the last reading. Only the
// worker and the reader touch it, once per request and once per reading.
type liveStats struct {
	mu       sync.Mutex
	hist     histogram
	requests int64
	errors   int64
}

func (l *liveStats) add(d time.Duration, ok bool) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.requests++
	if ok {
		l.hist.record(d)
	} else {
		l.errors++
	}
	l.mu.Unlock()
}

// drain moves l's counts into the totals and l's histogram into into.
func (l *liveStats) drain(into *histogram, requests, errors *int64) {
	l.mu.Lock()
	into.merge(&l.hist)
	*requests += l.requests
	*errors += l.errors
	l.hist, l.requests, l.errors = histogram{}, 0, 0
	l.mu.Unlock()
}

// report calls fn with a reading of lives every interval until ctx ends,
// and once more then, so the last reading covers the whole phase.
func report(ctx context.Context, phase string, every time.Duration, lives []*liveStats, fn func(Progress)) {
	start, last := time.Now(), time.Now()
	var requests, errors int64
	read := func() {
		var window histogram
		var n, e int64
		for _, l := range lives {
			l.drain(&window, &n, &e)
		}
		now := time.Now()
		requests, errors = requests+n, errors+e
		p := Progress{Phase: phase, Elapsed: now.Sub(start), Requests: requests, Errors: errors,
			P50: window.quantile(0.50), P99: window.quantile(0.99)}
		if secs := now.Sub(last).Seconds(); secs > 0 {
			p.Rate = float64(n) / secs
		}
		last = now
		fn(p)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			read()
			return
		case <-t.C:
			read()
		}
	}
}
