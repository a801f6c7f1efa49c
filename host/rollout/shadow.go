package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Decider serves decisions from the manager's engine and copies a sample
// of the calls to the shadow candidate of their kind, if any. The copy is
// queued (bounded; a full queue drops the sample) and decided by a worker
// goroutine: the request never waits for the candidate, and the
// candidate's decision is only compared, never used.
type Decider struct {
	eng    *policy.Engine
	m      *Manager
	shadow [4]atomic.Pointer[shadowRun]
}

var _ policy.Decider = (*Decider)(nil)

// Cache implements policy.Decider.
func (d *Decider) Cache(ctx context.Context, req *abi.CacheRequest) (abi.CacheDecision, policy.Result) {
	dec, res := d.eng.Cache(ctx, req)
	if run := d.shadow[abi.KindCache].Load(); run != nil && run.sampled() {
		r := abi.CacheRequest{Method: strings.Clone(req.Method), Route: strings.Clone(req.Route),
			Path: strings.Clone(req.Path), Query: strings.Clone(req.Query), User: strings.Clone(req.User)}
		a := dec
		a.Tags = slices.Clone(dec.Tags)
		run.enqueue(shadowJob{cacheReq: &r, cacheDec: a, res: res})
	}
	return dec, res
}

// Route implements policy.Decider.
func (d *Decider) Route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, policy.Result) {
	dec, res := d.eng.Route(ctx, req)
	if run := d.shadow[abi.KindRoute].Load(); run != nil && run.sampled() {
		r := *req
		r.Message = strings.Clone(req.Message)
		run.enqueue(shadowJob{routeReq: &r, routeDec: dec, res: res})
	}
	return dec, res
}

// Compress implements policy.Decider.
func (d *Decider) Compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, policy.Result) {
	dec, res := d.eng.Compress(ctx, req)
	if run := d.shadow[abi.KindCompress].Load(); run != nil && run.sampled() {
		r := abi.CompressRequest{Query: strings.Clone(req.Query), BudgetTokens: req.BudgetTokens,
			Messages: make([]abi.Message, len(req.Messages))}
		for i, msg := range req.Messages {
			msg.ID, msg.Text = strings.Clone(msg.ID), strings.Clone(msg.Text)
			r.Messages[i] = msg
		}
		a := dec
		a.Keep = slices.Clone(dec.Keep)
		run.enqueue(shadowJob{compressReq: &r, compressDec: a, res: res})
	}
	return dec, res
}

// ShadowStats are a shadow candidate's comparison figures.
type ShadowStats struct {
	Kind    string  `json:"kind"`
	ID      int64   `json:"id"`
	Policy  string  `json:"policy"`
	Version string  `json:"version"`
	Sample  float64 `json:"sample"`
	// Compared counts samples decided by both; Agreed those where the
	// decisions were equal (route: same tier; compress: same kept set;
	// cache: every field).
	Compared int64 `json:"compared"`
	Agreed   int64 `json:"agreed"`
	// AgreementRate is Agreed / Compared (0 before the first comparison).
	AgreementRate float64 `json:"agreement_rate"`
	// Errors are candidate calls that failed; Dropped samples found the
	// queue full.
	Errors  int64 `json:"errors"`
	Dropped int64 `json:"dropped"`
	// Mean latencies of the compared decisions, in microseconds.
	CandidateMeanUS float64   `json:"candidate_mean_us"`
	ActiveMeanUS    float64   `json:"active_mean_us"`
	CandidateMaxUS  float64   `json:"candidate_max_us"`
	Since           time.Time `json:"since"`
}

type shadowJob struct {
	res         policy.Result
	cacheReq    *abi.CacheRequest
	cacheDec    abi.CacheDecision
	routeReq    *abi.RouteRequest
	routeDec    abi.RouteDecision
	compressReq *abi.CompressRequest
	compressDec abi.CompressDecision
}

// shadowRun is one candidate beside one kind's active version.
type shadowRun struct {
	kind   abi.Kind
	rec    Record
	v      *policy.Version
	sample float64
	every  uint64 // one call in every is sampled
	n      atomic.Uint64
	q      chan shadowJob
	quit   chan struct{}
	wg     sync.WaitGroup
	since  time.Time

	compared, agreed, errs, dropped atomic.Int64
	candNS, activeNS, candMaxNS     atomic.Int64
}

func (r *shadowRun) sampled() bool { return r.n.Add(1)%r.every == 0 }

func (r *shadowRun) enqueue(j shadowJob) {
	select {
	case r.q <- j:
	default:
		r.dropped.Add(1)
	}
}

func (r *shadowRun) work() {
	defer r.wg.Done()
	for {
		select {
		case <-r.quit:
			return
		case j := <-r.q:
			r.compare(j)
		}
	}
}

func (r *shadowRun) compare(j shadowJob) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	var agree bool
	var err error
	switch {
	case j.cacheReq != nil:
		var d abi.CacheDecision
		d, err = r.v.Cache(ctx, j.cacheReq)
		agree = d.Action == j.cacheDec.Action && d.Key == j.cacheDec.Key && d.TTLSeconds == j.cacheDec.TTLSeconds &&
			d.Scope == j.cacheDec.Scope && d.StaleSeconds == j.cacheDec.StaleSeconds && slices.Equal(d.Tags, j.cacheDec.Tags)
	case j.routeReq != nil:
		var d abi.RouteDecision
		d, err = r.v.Route(ctx, j.routeReq)
		agree = d.Tier == j.routeDec.Tier
	case j.compressReq != nil:
		var d abi.CompressDecision
		d, err = r.v.Compress(ctx, j.compressReq)
		agree = slices.Equal(d.Keep, j.compressDec.Keep)
	}
	took := time.Since(start)
	if err != nil {
		r.errs.Add(1)
		return
	}
	r.compared.Add(1)
	if agree {
		r.agreed.Add(1)
	}
	r.candNS.Add(int64(took))
	r.activeNS.Add(int64(j.res.Duration))
	for {
		cur := r.candMaxNS.Load()
		if int64(took) <= cur || r.candMaxNS.CompareAndSwap(cur, int64(took)) {
			break
		}
	}
}

func (r *shadowRun) stats() ShadowStats {
	st := ShadowStats{Kind: r.kind.String(), ID: r.rec.ID, Policy: r.rec.Name, Version: r.v.Digest(), Sample: r.sample,
		Compared: r.compared.Load(), Agreed: r.agreed.Load(), Errors: r.errs.Load(), Dropped: r.dropped.Load(),
		CandidateMaxUS: float64(r.candMaxNS.Load()) / 1e3, Since: r.since}
	if st.Compared > 0 {
		st.AgreementRate = float64(st.Agreed) / float64(st.Compared)
		st.CandidateMeanUS = float64(r.candNS.Load()) / float64(st.Compared) / 1e3
		st.ActiveMeanUS = float64(r.activeNS.Load()) / float64(st.Compared) / 1e3
	}
	return st
}

// startShadow installs a candidate for kind, replacing (and closing) the
// one before.
func (d *Decider) startShadow(kind abi.Kind, rec Record, v *policy.Version, sample float64) {
	every := uint64(1)
	if sample > 0 && sample < 1 {
		every = uint64(1/sample + 0.5)
	}
	run := &shadowRun{kind: kind, rec: rec, v: v, sample: sample, every: every,
		q: make(chan shadowJob, d.m.cfg.ShadowQueue), quit: make(chan struct{}), since: time.Now().UTC()}
	run.wg.Add(1)
	go run.work()
	if old := d.shadow[kind].Swap(run); old != nil {
		old.stop()
	}
	d.m.log.Info("rollout: shadow started", "kind", kind, "id", rec.ID, "version", v.Digest(), "sample", sample)
}

func (r *shadowRun) stop() {
	close(r.quit)
	r.wg.Wait()
	r.v.Close()
}

func (d *Decider) stopShadow(kind abi.Kind) {
	if old := d.shadow[kind].Swap(nil); old != nil {
		old.stop()
		d.m.log.Info("rollout: shadow stopped", "kind", kind, "id", old.rec.ID, "stats", old.stats())
	}
}

func (d *Decider) shadowID(kind abi.Kind) int64 {
	if r := d.shadow[kind].Load(); r != nil {
		return r.rec.ID
	}
	return 0
}

func (d *Decider) shadowStats(kind abi.Kind) (ShadowStats, bool) {
	if r := d.shadow[kind].Load(); r != nil {
		return r.stats(), true
	}
	return ShadowStats{}, false
}

// StartShadow runs version id beside the active version of its kind on a
// sample of live traffic (sample in (0, 1]; zero: the configured default).
// The candidate goes through the pipeline first, up to the switch,
// without holding up the kind's activations or rollbacks.
func (m *Manager) StartShadow(ctx context.Context, id int64, sample float64) (Record, error) {
	rec, err := m.store.Get(ctx, id)
	if err != nil {
		return Record{}, storeFailed("read the version", err)
	}
	if sample <= 0 {
		sample = m.cfg.ShadowSample
	}
	if sample > 1 || sample != sample {
		return rec, fmt.Errorf("%w: sample %v: want a share in (0, 1]", ErrInvalid, sample)
	}
	kind, ok := abi.ParseKind(rec.Kind)
	if !ok {
		return rec, &StepError{StepValidate, fmt.Errorf("unknown kind %q", rec.Kind)}
	}
	if cur := m.slot(kind); cur != nil && cur.rec.ID == id {
		return rec, fmt.Errorf("%w: version %d is the active version of %s", ErrInvalid, id, kind)
	}
	o, err := m.begin(ctx, kind, "shadow", id)
	if err != nil {
		return rec, err
	}
	defer m.end(o)
	v, rec, err := m.checkOrReject(ctx, o, rec)
	if err != nil {
		return rec, err
	}
	err = m.commit(o, func() error {
		if prev := m.dec.shadowID(kind); prev != 0 && prev != id {
			_ = m.store.SetStatus(ctx, prev, StatusInactive, "")
		}
		if err := m.store.SetStatus(ctx, id, StatusShadow, ""); err != nil {
			return storeFailed("record the shadow", err)
		}
		m.dec.startShadow(kind, rec, v, sample)
		return nil
	})
	if err != nil {
		v.Close()
		return rec, err
	}
	m.notify(ctx)
	if r, err := m.store.Get(ctx, id); err == nil {
		rec = r
	}
	return rec, nil
}

// StopShadow stops the shadow candidate of kind, if any, and returns its
// final comparison figures.
func (m *Manager) StopShadow(ctx context.Context, kind abi.Kind) (ShadowStats, error) {
	l := &m.lanes[kind]
	l.switchMu.Lock()
	st, ok := m.dec.shadowStats(kind)
	if ok {
		m.dec.stopShadow(kind)
	}
	l.switchMu.Unlock()
	if !ok {
		return ShadowStats{}, fmt.Errorf("%w: no shadow running for %s", ErrNotFound, kind)
	}
	if err := m.store.SetStatus(ctx, st.ID, StatusInactive, ""); err != nil {
		return st, storeFailed("record the end of the shadow", err)
	}
	m.notify(ctx)
	return st, nil
}
