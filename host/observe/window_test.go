package observe

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		ns := int64(r.ExpFloat64() * float64(r.IntN(1<<30)+1))
		i := bucketOf(ns)
		lo, w := bucketBounds(i)
		if float64(ns) < lo || float64(ns) >= lo+w {
			t.Fatalf("ns %d in bucket %d [%v, %v)", ns, i, lo, lo+w)
		}
		if mid := lo + w/2; ns > 0 && math.Abs(mid-float64(ns))/float64(ns) > 0.0667 {
			t.Fatalf("ns %d: bucket midpoint %v off by more than 6.67%%", ns, mid)
		}
	}
	if got := bucketOf(math.MaxInt64); got != maxBucketIdx {
		t.Fatalf("bucketOf(max) = %d, want %d", got, maxBucketIdx)
	}
	if got := bucketOf(-5); got != 0 {
		t.Fatalf("bucketOf(-5) = %d, want 0", got)
	}
}

func TestLatencyQuantiles(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	r := rand.New(rand.NewPCG(3, 4))
	l := NewLatency()
	var all []float64
	// 30 s of traffic, 200 observations per second, log-normal durations.
	for sec := range 30 {
		for i := range 200 {
			d := time.Duration(math.Exp(r.NormFloat64()*0.8+math.Log(0.02)) * 1e9)
			all = append(all, d.Seconds())
			l.Record(t0.Add(time.Duration(sec)*time.Second+time.Duration(i)*time.Millisecond), d, i%100 == 0)
		}
	}
	sort.Float64s(all)
	now := t0.Add(29*time.Second + 500*time.Millisecond)
	for _, w := range []time.Duration{time.Minute, 5 * time.Minute} {
		st := l.Stats(now, w)
		if st.Count != 6000 || st.Errors != 60 {
			t.Fatalf("window %s: count %d errors %d, want 6000 and 60", w, st.Count, st.Errors)
		}
		for _, c := range []struct {
			q   float64
			got float64
		}{{0.5, st.P50}, {0.95, st.P95}, {0.99, st.P99}} {
			want := all[int(math.Ceil(c.q*float64(len(all))))-1]
			if math.Abs(c.got-want)/want > 0.07 {
				t.Errorf("window %s: P%v = %v, want %v within 7%%", w, c.q*100, c.got, want)
			}
		}
	}
	// The last 10 seconds only.
	if st := l.Stats(now, 10*time.Second); st.Count != 2000 {
		t.Errorf("10 s window count = %d, want 2000", st.Count)
	}
	ps := l.PerSecond(now, 60)
	if ps[59] != 200 || ps[29] != 0 || ps[30] != 200 {
		t.Errorf("per-second series = %v", ps)
	}
}

func TestLatencyExpires(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := NewLatency()
	l.Record(t0, 2*time.Second, false)
	tests := []struct {
		after  time.Duration
		window time.Duration
		want   uint64
	}{
		{0, time.Minute, 1},
		{59 * time.Second, time.Minute, 1},
		{61 * time.Second, time.Minute, 0},
		{61 * time.Second, 5 * time.Minute, 1},
		{290 * time.Second, 5 * time.Minute, 1},
		{301 * time.Second, 5 * time.Minute, 0},
		// A slot reused for a later period forgets the old one.
		{600 * time.Second, 5 * time.Minute, 0},
	}
	for _, tc := range tests {
		if got := l.Stats(t0.Add(tc.after), tc.window).Count; got != tc.want {
			t.Errorf("after %s, window %s: count %d, want %d", tc.after, tc.window, got, tc.want)
		}
	}
	l.Record(t0.Add(600*time.Second), time.Millisecond, false)
	st := l.Stats(t0.Add(600*time.Second), 5*time.Minute)
	if st.Count != 1 || st.P99 > 0.0011 {
		t.Errorf("after reuse: %+v", st)
	}
}

func TestCountersWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewCounters(2)
	for i := range 120 {
		c.Add(t0.Add(time.Duration(i)*time.Second), 0, 1)
		c.Add(t0.Add(time.Duration(i)*time.Second), 1, 2)
	}
	now := t0.Add(119 * time.Second)
	if got := c.Sums(now, time.Minute); got[0] != 60 || got[1] != 120 {
		t.Errorf("1 min sums = %v, want [60 120]", got)
	}
	if got := c.Sums(now, 5*time.Minute); got[0] != 120 || got[1] != 240 {
		t.Errorf("5 min sums = %v, want [120 240]", got)
	}
}

func TestLatencyConcurrent(t *testing.T) {
	l := NewLatency()
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				l.Record(now.Add(time.Duration(i%3)*time.Second), time.Duration(g*i), false)
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			_ = l.Stats(now, time.Minute)
		}
	})
	wg.Wait()
	if got := l.Stats(now.Add(2*time.Second), time.Minute).Count; got != 20000 {
		t.Fatalf("count = %d, want 20000", got)
	}
}

func BenchmarkLatencyRecord(b *testing.B) {
	l := NewLatency()
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Record(now, 1500*time.Microsecond, false)
		}
	})
}

func TestCoarseWindows(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newCoarseLatency()
	c := newCoarseCounters(1)
	l.Record(t0, 3*time.Millisecond, true)
	c.Add(t0, 0, 2)
	tests := []struct {
		after      time.Duration
		window     time.Duration
		want, errs uint64
	}{
		{5 * time.Second, time.Minute, 1, 1},
		{65 * time.Second, time.Minute, 0, 0},
		{65 * time.Second, 5 * time.Minute, 1, 1},
		{305 * time.Second, 5 * time.Minute, 0, 0},
	}
	for _, tc := range tests {
		st := l.Stats(t0.Add(tc.after), tc.window)
		if st.Count != tc.want || st.Errors != tc.errs {
			t.Errorf("after %s, window %s: %+v, want count %d", tc.after, tc.window, st, tc.want)
		}
		if got := c.Sums(t0.Add(tc.after), tc.window)[0]; got != 2*tc.want {
			t.Errorf("counters after %s, window %s: %d, want %d", tc.after, tc.window, got, 2*tc.want)
		}
	}
	if ps := l.PerSecond(t0, 60); len(ps) != 60 || ps[59] != 0 {
		t.Errorf("coarse PerSecond = %v", ps)
	}
}
