package observe

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The two histograms recorded on every request (HTTP duration and policy
// decision duration) are aggregated here, in atomics of pre-bound series,
// and handed to the MeterProvider's reader as a metric Producer at each
// collection: the same OpenTelemetry data (cumulative explicit-bucket
// histograms) that a synchronous instrument would produce, for a tenth of
// its cost (the SDK resolves and deduplicates the attribute set and looks
// it up on every Record, which costs more than the rest of a request's
// measurements together; BenchmarkHooks).

// histFamily is one histogram metric: its description and series.
type histFamily struct {
	name, unit, desc string
	bounds           []float64
	boundsNS         []int64
	start            time.Time
	series           seriesMap[attribute.Distinct, *atomicHist]
}

func newHistFamily(name, unit, desc string, bounds []float64, start time.Time) *histFamily {
	f := &histFamily{name: name, unit: unit, desc: desc, bounds: slices.Clone(bounds), start: start}
	for _, b := range bounds {
		f.boundsNS = append(f.boundsNS, int64(b*1e9))
	}
	return f
}

// atomicHist is one series of a histFamily.
type atomicHist struct {
	f      *histFamily
	attrs  attribute.Set
	counts []atomic.Uint64 // len(bounds)+1, the last is +Inf
	sumNS  atomic.Int64
}

// series returns the series with attrs, creating it.
func (f *histFamily) seriesFor(attrs attribute.Set) *atomicHist {
	return f.series.getOrCreate(attrs.Equivalent(), nil, func(attribute.Distinct) *atomicHist {
		return &atomicHist{f: f, attrs: attrs, counts: make([]atomic.Uint64, len(f.bounds)+1)}
	})
}

// record adds one duration: bucket i counts values in (bounds[i-1],
// bounds[i]], as Prometheus' le buckets.
func (h *atomicHist) record(d time.Duration) {
	ns := int64(d)
	i, lo, hi := 0, 0, len(h.f.boundsNS)
	for lo < hi {
		mid := (lo + hi) / 2
		if h.f.boundsNS[mid] >= ns {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	i = lo
	h.counts[i].Add(1)
	h.sumNS.Add(ns)
}

func (f *histFamily) data(now time.Time) metricdata.Metrics {
	var pts []metricdata.HistogramDataPoint[float64]
	f.series.each(func(_ attribute.Distinct, h *atomicHist) {
		p := metricdata.HistogramDataPoint[float64]{
			Attributes:   h.attrs,
			StartTime:    f.start,
			Time:         now,
			Bounds:       f.bounds,
			BucketCounts: make([]uint64, len(h.counts)),
			Sum:          float64(h.sumNS.Load()) / 1e9,
		}
		for i := range h.counts {
			p.BucketCounts[i] = h.counts[i].Load()
			p.Count += p.BucketCounts[i]
		}
		pts = append(pts, p)
	})
	return metricdata.Metrics{Name: f.name, Description: f.desc, Unit: f.unit,
		Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: pts}}
}

// histProducer hands the histFamilies to the reader.
type histProducer struct {
	scope    instrumentation.Scope
	families []*histFamily
}

// Produce returns the families' current data.
func (p *histProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	sm := metricdata.ScopeMetrics{Scope: p.scope}
	for _, f := range p.families {
		if d := f.data(now); len(d.Data.(metricdata.Histogram[float64]).DataPoints) > 0 {
			sm.Metrics = append(sm.Metrics, d)
		}
	}
	return []metricdata.ScopeMetrics{sm}, nil
}
