package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Version is one loaded policy module with its configuration and its pool
// of warm instances. Create it with Runtime.Load. Its methods are safe for
// concurrent use. A version may be active in an Engine, called directly
// (shadow traffic, self-tests, offline evaluation), or both.
type Version struct {
	rt       *Runtime
	name     string
	digest   string
	config   []byte
	deadline time.Duration
	module   *compiledModule
	// code is what new instances are made from: the module's compiled
	// code, or its interpreted code until the version is promoted
	// (tier.go). The version holds a reference on it (code.use).
	code       atomic.Pointer[code]
	compiled   chan struct{} // closed once code is compiled
	initialize bool
	start      bool // run the module's start function (startExportName) first
	kinds      uint32
	log        *slog.Logger

	min, max       int
	recycleCalls   int64
	recycleMemory  uint64
	acquireTimeout time.Duration

	idle     idlePool
	total    atomic.Int32 // instances alive or being created
	lastBusy atomic.Int64 // nanotime when a caller last found no idle instance

	// refs counts calls and instance creations in flight; closingBit is
	// set by Close, and whoever brings refs to exactly closingBit closes.
	refs atomic.Int64
	done chan struct{}

	mu        sync.Mutex
	instances map[*instance]struct{}

	created, discarded               atomic.Int64
	retiredCalls                     atomic.Int64
	failures, timeouts, traps, stale atomic.Int64
	recycles, forcedRecycles         atomic.Int64 // after RecycleCalls calls; over RecycleMemory
	maxPages                         atomic.Int64 // the largest memory an instance has had

	// Guest output: the version's quota, what it let through and dropped,
	// and when a drop was last logged.
	logBucket              *logBucket
	logWritten, logDropped atomic.Int64
	lastDropLog            atomic.Int64

	calls callHistogram
}

const closingBit = int64(1) << 62

func newVersion(rt *Runtime, spec Spec, digest string, mod *compiledModule, c *code) *Version {
	min, max := poolSizes(spec)
	v := &Version{
		rt:             rt,
		name:           spec.Name,
		digest:         digest,
		config:         append([]byte(nil), spec.Config...),
		deadline:       spec.Deadline,
		module:         mod,
		initialize:     mod.prepared.initialize,
		start:          mod.prepared.start,
		logBucket:      newLogBucket(rt.opts.LogBytesPerSecond, rt.opts.LogBurst),
		log:            rt.log.With("policy", spec.Name, "version", digest),
		min:            min,
		max:            max,
		recycleCalls:   int64(spec.RecycleCalls),
		recycleMemory:  spec.RecycleMemory,
		acquireTimeout: spec.AcquireTimeout,
		done:           make(chan struct{}),
		instances:      map[*instance]struct{}{},
	}
	if v.recycleCalls <= 0 {
		v.recycleCalls = DefaultRecycleCalls
	}
	if v.recycleMemory == 0 {
		v.recycleMemory = DefaultRecycleMemory
	}
	if v.acquireTimeout <= 0 {
		v.acquireTimeout = DefaultAcquireTimeout
	}
	v.code.Store(c)
	v.compiled = make(chan struct{})
	if c.tier == Compiled {
		close(v.compiled)
	}
	return v
}

// Compiled is closed once new calls of the version run compiled: at once
// for a version loaded compiled, at its promotion for one a tiered start
// left interpreted (never, if its module fails to compile).
func (v *Version) Compiled() <-chan struct{} { return v.compiled }

// ExecTier reports whether new calls run compiled or interpreted.
func (v *Version) ExecTier() ExecTier { return v.code.Load().tier }

// Name returns the policy name of the Spec.
func (v *Version) Name() string { return v.name }

// Digest returns the short SHA-256 of the module (Result.Version).
func (v *Version) Digest() string { return v.digest }

// Handles reports whether the module has a handler for kind.
func (v *Version) Handles(k abi.Kind) bool { return v.kinds&k.Bit() != 0 }

// Kinds returns the kinds the module handles, in ABI order.
func (v *Version) Kinds() []abi.Kind {
	var ks []abi.Kind
	for _, k := range abi.Kinds {
		if v.Handles(k) {
			ks = append(ks, k)
		}
	}
	return ks
}

// Deadline returns the per-call deadline for kind.
func (v *Version) Deadline(k abi.Kind) time.Duration {
	if v.deadline > 0 {
		return v.deadline
	}
	return DefaultDeadline(k)
}

// acquireRef takes a reference unless the version is closing.
func (v *Version) acquireRef() bool {
	for {
		r := v.refs.Load()
		if r&closingBit != 0 {
			return false
		}
		if v.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

func (v *Version) releaseRef() {
	if v.refs.Add(-1) == closingBit {
		v.closeNow()
	}
}

// Close closes the version once the calls in flight have finished; new
// calls fail with ErrUnavailable. It returns at once; Done is closed when
// the version is fully closed. Close a version only when no Engine has it
// active (Engine.Activate returns the version it replaced).
func (v *Version) Close() {
	if old := v.refs.Or(closingBit); old == 0 {
		v.closeNow()
	}
}

// Done is closed when the version has drained and released its instances.
func (v *Version) Done() <-chan struct{} { return v.done }

// closeNow releases every instance and the compiled module. It runs once,
// when no call or instance creation is in flight.
func (v *Version) closeNow() {
	v.refs.Or(closingBit)
	v.mu.Lock()
	select {
	case <-v.done:
		v.mu.Unlock()
		return
	default:
	}
	close(v.done)
	v.rt.mu.Lock()
	delete(v.rt.versions, v)
	v.rt.mu.Unlock()
	ins := v.instances
	v.instances = map[*instance]struct{}{}
	v.mu.Unlock()
	v.idle.drain()
	for in := range ins {
		v.rt.untrack(in)
		v.retiredCalls.Add(in.calls.Load())
		in.close()
		v.total.Add(-1)
		v.discarded.Add(1)
		if o := v.rt.obs; o != nil {
			o.InstanceDiscarded(v.name, v.digest, "close")
		}
	}
	v.code.Load().unuse()
	v.rt.releaseModule(v.module)
}

// put registers a new instance and makes it available; one started on
// code the version has since left (promote) is closed instead.
func (v *Version) put(in *instance) {
	v.mu.Lock()
	v.instances[in] = struct{}{}
	v.mu.Unlock()
	if !v.idle.putUnless(in, v.outdated) {
		v.discard(in, "tier")
	}
}

// outdated reports whether in was made from code the version has left
// (promote): it serves no more calls.
func (v *Version) outdated(in *instance) bool { return in.code != v.code.Load() }

// acquire returns an idle instance, starting a new one when the pool is
// below its cap, and waits up to the acquire timeout or ctx's end.
func (v *Version) acquire(ctx context.Context) (*instance, error) {
	if in := v.idle.get(); in != nil {
		return in, nil
	}
	v.lastBusy.Store(nanotime())
	v.grow()
	in, err := v.idle.wait(ctx, v.acquireTimeout)
	switch {
	case err == errPoolTimeout:
		return nil, fmt.Errorf("%w: none free within %v (pool of %d)", ErrUnavailable, v.acquireTimeout, v.max)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return in, nil
}

// grow starts one more instance in the background if below the cap.
func (v *Version) grow() {
	for {
		n := v.total.Load()
		if int(n) >= v.max {
			return
		}
		if v.total.CompareAndSwap(n, n+1) {
			break
		}
	}
	if !v.acquireRef() {
		v.total.Add(-1)
		return
	}
	go func() {
		defer v.releaseRef()
		in, err := v.newInstance(context.Background())
		if err != nil {
			v.total.Add(-1)
			if !errors.Is(err, errRuntimeClosed) {
				v.log.Error("policy: start instance", "err", err)
			}
			return
		}
		v.put(in)
	}()
}

// release returns in to the pool, or discards it (reason non-empty) and
// keeps the pool at its minimum.
func (v *Version) release(in *instance, reason string) {
	if reason == "" {
		switch {
		case uint64(in.mem.Size()) > v.recycleMemory:
			reason = "memory"
		case in.calls.Load() >= v.recycleCalls:
			reason = "recycle"
		case v.idle.putUnless(in, v.outdated):
			return
		default:
			reason = "tier" // the version moved to compiled code meanwhile
		}
	}
	v.discard(in, reason)
}

// discard closes in for reason (counting a recycle as such) and keeps
// the pool at its minimum.
func (v *Version) discard(in *instance, reason string) {
	switch reason {
	case "memory":
		v.forcedRecycles.Add(1)
	case "recycle":
		v.recycles.Add(1)
	}
	v.mu.Lock()
	_, ok := v.instances[in]
	delete(v.instances, in)
	v.mu.Unlock()
	if !ok {
		return
	}
	v.rt.untrack(in)
	v.retiredCalls.Add(in.calls.Load())
	in.close()
	v.total.Add(-1)
	v.discarded.Add(1)
	if o := v.rt.obs; o != nil {
		o.InstanceDiscarded(v.name, v.digest, reason)
	}
	if int(v.total.Load()) < v.min {
		v.grow()
	}
}

// shrink closes idle instances above the minimum when the pool has not
// run short for idle nanoseconds. It runs on the watchdog goroutine.
func (v *Version) shrink(now, idle int64) {
	if now-v.lastBusy.Load() < idle || !v.acquireRef() {
		return
	}
	defer v.releaseRef()
	for int(v.total.Load()) > v.min {
		in := v.idle.oldest()
		if in == nil {
			return
		}
		v.release(in, "idle")
	}
}

// begin acquires an instance for a decision of kind.
func (v *Version) begin(ctx context.Context, kind abi.Kind) (*instance, error) {
	if !v.Handles(kind) {
		return nil, ErrKind
	}
	return v.acquire(ctx)
}

// exec runs the decision encoded in in.scratch under the kind's deadline
// and returns the decision bytes: a view into guest memory valid until
// the instance is released. A call that outlives its deadline is a
// timeout, whether the watchdog stopped it or it returned by itself.
func (v *Version) exec(in *instance, kind abi.Kind) ([]byte, error) {
	d := v.Deadline(kind)
	v.rt.enter(in)
	defer v.rt.leave(in)
	in.armBudget(d)
	in.logLeft = v.rt.opts.LogBytesPerCall
	start := v.rt.arm(in, d)
	res, err := in.invoke(in.decide, kind, in.scratch)
	in.elapsed = nanotime() - start
	stopped := in.deadline.Swap(0) == deadlineStopped
	v.calls.observe(in.elapsed)
	if (stopped || in.elapsed > int64(d)) && !errors.Is(err, ErrTimeout) {
		err = fmt.Errorf("%w: the call took %v against a deadline of %v", ErrTimeout, time.Duration(in.elapsed), d)
	}
	if err != nil {
		return nil, err
	}
	return splitPayload(res)
}

// finish releases in after a call that returned err and returns the
// call's error: err, or, for a call that succeeded but left the
// instance's memory over RecycleMemory, ErrMemoryQuota (the instance is
// recycled, and that counts as a failure).
func (v *Version) finish(in *instance, kind abi.Kind, err error) error {
	if in == nil {
		return err
	}
	size := uint64(in.mem.Size())
	p := int64(size >> 16)
	if old := in.pages.Swap(p); old != p {
		if r := v.rt.res; r != nil {
			r.PolicyMemory(v.name, v.digest, int64(size))
		}
	}
	if p > v.maxPages.Load() {
		v.maxPages.Store(p)
	}
	if err == nil && size > v.recycleMemory {
		err = fmt.Errorf("%w: memory grew to %d bytes (quota %d)", ErrMemoryQuota, size, v.recycleMemory)
	}
	reason := ""
	outcome := outcomeOf(err)
	switch outcome {
	case OutcomeTimeout:
		reason = "timeout"
		v.timeouts.Add(1)
	case OutcomeTrap:
		reason = "trap"
		v.traps.Add(1)
	default:
		if err != nil {
			v.failures.Add(1)
		}
	}
	in.calls.Add(1)
	if r := v.rt.res; r != nil {
		r.PolicyCall(kind, v.name, v.digest, time.Duration(in.elapsed), outcome)
	}
	v.release(in, reason)
	return err
}

// noteDropped logs, at most once per DefaultLogEvery, that the output
// quotas dropped some of the version's output.
func (v *Version) noteDropped() {
	now := nanotime()
	last := v.lastDropLog.Load()
	if (last == 0 || now-last >= int64(DefaultLogEvery)) && v.lastDropLog.CompareAndSwap(last, now) {
		v.log.Warn("policy output over its quota: dropping the rest", "dropped_bytes_total", v.logDropped.Load(),
			"per_call", v.rt.opts.LogBytesPerCall, "per_second", v.rt.opts.LogBytesPerSecond, "burst", v.rt.opts.LogBurst)
	}
}

func (v *Version) callErr(kind abi.Kind, err error) error {
	return &CallError{Kind: kind, Policy: v.name, Version: v.digest, Err: err}
}

// Cache asks this version for a cache decision, without fallback. The
// decision is validated; any failure is a *CallError.
func (v *Version) Cache(ctx context.Context, req *abi.CacheRequest) (abi.CacheDecision, error) {
	if !v.acquireRef() {
		return abi.CacheDecision{}, v.callErr(abi.KindCache, ErrUnavailable)
	}
	defer v.releaseRef()
	var d abi.CacheDecision
	_, err := v.cache(ctx, req, &d, nil)
	return d, err
}

// cache is Cache for a caller holding a reference, decoding into d: the
// decision's bytes are appended to buf, d's strings are views of them,
// and the grown buf is returned for reuse. On failure d is the zero
// decision (keeping d.Tags' capacity).
func (v *Version) cache(ctx context.Context, req *abi.CacheRequest, d *abi.CacheDecision, buf []byte) ([]byte, error) {
	in, err := v.begin(ctx, abi.KindCache)
	if err == nil {
		in.scratch = abi.AppendCacheRequest(in.scratch[:0], req)
		var body []byte
		lim := v.rt.decisionLimits()
		if body, err = v.exec(in, abi.KindCache); err == nil {
			err = checkCacheSize(body, lim) // before copying a key of any size
		}
		if err == nil {
			// Out of guest memory before the instance goes back to the pool.
			start := len(buf)
			buf = append(buf, body...)
			err = decodeCache(buf[start:], d, lim)
		}
		err = v.finish(in, abi.KindCache, err)
	}
	if err != nil {
		*d = abi.CacheDecision{Tags: d.Tags[:0]}
		return buf, v.callErr(abi.KindCache, err)
	}
	return buf, nil
}

// Route asks this version for a route decision, without fallback.
func (v *Version) Route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, error) {
	if !v.acquireRef() {
		return abi.RouteDecision{}, v.callErr(abi.KindRoute, ErrUnavailable)
	}
	defer v.releaseRef()
	return v.route(ctx, req)
}

// route is Route for a caller holding a reference.
func (v *Version) route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, error) {
	var d abi.RouteDecision
	in, err := v.begin(ctx, abi.KindRoute)
	if err != nil {
		return d, v.callErr(abi.KindRoute, err)
	}
	in.scratch = abi.AppendRouteRequest(in.scratch[:0], req)
	body, err := v.exec(in, abi.KindRoute)
	if err == nil {
		err = decodeRoute(body, &d)
	}
	err = v.finish(in, abi.KindRoute, err)
	if err != nil {
		return abi.RouteDecision{}, v.callErr(abi.KindRoute, err)
	}
	return d, nil
}

// Compress asks this version for a compress decision, without fallback.
// The decision is checked against req: keep indexes in range and strictly
// ascending, tokens covering the kept messages and within the budget.
func (v *Version) Compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, error) {
	if !v.acquireRef() {
		return abi.CompressDecision{}, v.callErr(abi.KindCompress, ErrUnavailable)
	}
	defer v.releaseRef()
	return v.compress(ctx, req)
}

// compress is Compress for a caller holding a reference.
func (v *Version) compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, error) {
	var d abi.CompressDecision
	in, err := v.begin(ctx, abi.KindCompress)
	if err != nil {
		return d, v.callErr(abi.KindCompress, err)
	}
	in.scratch = abi.AppendCompressRequest(in.scratch[:0], req)
	body, err := v.exec(in, abi.KindCompress)
	if err == nil {
		err = decodeCompress(body, req, &d)
	}
	err = v.finish(in, abi.KindCompress, err)
	if err != nil {
		return abi.CompressDecision{}, v.callErr(abi.KindCompress, err)
	}
	return d, nil
}

// decisionLimits bound a cache decision (Options.MaxKeyBytes, MaxTags,
// MaxTagBytes).
type decisionLimits struct {
	maxKey, maxTags, maxTag int
}

var defaultDecisionLimits = decisionLimits{DefaultMaxKeyBytes, DefaultMaxTags, DefaultMaxTagBytes}

func (rt *Runtime) decisionLimits() decisionLimits {
	return decisionLimits{rt.opts.MaxKeyBytes, rt.opts.MaxTags, rt.opts.MaxTagBytes}
}

// decodeCache decodes and checks a cache decision; its strings are views
// of b, which must not be guest memory. The key length and the tag count
// are read from the bytes and checked before the decoder runs, so that
// it never allocates for a count over the limit.
func decodeCache(b []byte, d *abi.CacheDecision, lim decisionLimits) error {
	if err := checkCacheSize(b, lim); err != nil {
		return err
	}
	if err := abi.DecodeCacheDecisionView(b, d); err != nil {
		return fmt.Errorf("%w: %w", ErrBadDecision, err)
	}
	if d.Action == abi.CacheLookup && d.Key == "" {
		return fmt.Errorf("%w: lookup without a key", ErrBadDecision)
	}
	for i, t := range d.Tags {
		if len(t) > lim.maxTag {
			return fmt.Errorf("%w: tag %d of %d bytes over the %d limit", ErrBadDecision, i, len(t), lim.maxTag)
		}
	}
	return nil
}

// checkCacheSize checks an encoded cache decision's key length and tag
// count against lim without decoding it. Bytes it cannot read are left
// to the decoder to refuse.
func checkCacheSize(b []byte, lim decisionLimits) error {
	// action, key, ttl, scope, stale, tag count, tags.
	if most := 1 + 4 + lim.maxKey + 4 + 1 + 4 + 4 + lim.maxTags*(4+lim.maxTag); len(b) > most {
		return fmt.Errorf("%w: %d bytes, over the %d a decision within the limits can take", ErrBadDecision, len(b), most)
	}
	if len(b) >= 5 {
		key := uint64(binary.LittleEndian.Uint32(b[1:]))
		if key > uint64(lim.maxKey) {
			return fmt.Errorf("%w: key of %d bytes over the %d limit", ErrBadDecision, key, lim.maxKey)
		}
		// action, key, ttl, scope, stale, then the tag count.
		if off := 5 + key + 4 + 1 + 4; off+4 <= uint64(len(b)) {
			if n := binary.LittleEndian.Uint32(b[off:]); uint64(n) > uint64(lim.maxTags) {
				return fmt.Errorf("%w: %d tags over the %d limit", ErrBadDecision, n, lim.maxTags)
			}
		}
	}
	return nil
}

// decodeRoute decodes and checks a route decision from guest bytes.
func decodeRoute(b []byte, d *abi.RouteDecision) error {
	if err := abi.DecodeRouteDecision(b, d); err != nil {
		return fmt.Errorf("%w: %w", ErrBadDecision, err)
	}
	return nil
}

// decodeCompress decodes a compress decision and checks it against req.
func decodeCompress(b []byte, req *abi.CompressRequest, d *abi.CompressDecision) error {
	if err := abi.DecodeCompressDecision(b, d); err != nil {
		return fmt.Errorf("%w: %w", ErrBadDecision, err)
	}
	return checkCompress(req, d)
}

func checkCompress(req *abi.CompressRequest, d *abi.CompressDecision) error {
	var kept uint64
	for i, k := range d.Keep {
		if int(k) >= len(req.Messages) {
			return fmt.Errorf("%w: keep index %d out of range (%d messages)", ErrBadDecision, k, len(req.Messages))
		}
		if i > 0 && k <= d.Keep[i-1] {
			return fmt.Errorf("%w: keep indexes not strictly ascending at position %d", ErrBadDecision, i)
		}
		kept += uint64(req.Messages[k].Tokens)
	}
	if d.Tokens > req.BudgetTokens {
		return fmt.Errorf("%w: %d tokens over the budget of %d", ErrBadDecision, d.Tokens, req.BudgetTokens)
	}
	if kept > uint64(d.Tokens) {
		return fmt.Errorf("%w: kept messages hold %d tokens, decision says %d", ErrBadDecision, kept, d.Tokens)
	}
	return nil
}

// VersionStats is a snapshot of a version's counters.
type VersionStats struct {
	Policy    string
	Version   string
	Kinds     []abi.Kind
	Instances int   // alive now
	Idle      int   // alive and free now
	Max       int   // pool cap
	Calls     int64 // completed calls (including failed ones)
	Failures  int64 // error status or invalid decision
	Timeouts  int64
	Traps     int64
	Created   int64 // instances started
	Discarded int64 // instances thrown away or recycled
	// Recycles are routine (after RecycleCalls calls); ForcedRecycles
	// were forced by the memory quota (RecycleMemory) and count as
	// failures.
	Recycles       int64
	ForcedRecycles int64
	// LogBytes is guest output written to the log, LogDropped what the
	// output quotas dropped.
	LogBytes, LogDropped int64
	// MemoryPages is the memory of the live instances, in 64 KiB pages;
	// MaxMemoryPages the largest any instance has had after a call.
	MemoryPages, MaxMemoryPages int64
	// CallTime is the histogram of decision call durations.
	CallTime CallHistogram
	Closed   bool
	// ExecTier is what new calls run on: compiled, or interpreted until
	// a tiered start's compilation ends.
	ExecTier ExecTier
}

// Stats returns a snapshot of the version's counters.
func (v *Version) Stats() VersionStats {
	s := VersionStats{
		Policy: v.name, Version: v.digest, Kinds: v.Kinds(), Max: v.max,
		Idle: v.idle.len(), Failures: v.failures.Load(), Timeouts: v.timeouts.Load(), Traps: v.traps.Load(),
		Created: v.created.Load(), Discarded: v.discarded.Load(), Calls: v.retiredCalls.Load(),
		Recycles: v.recycles.Load(), ForcedRecycles: v.forcedRecycles.Load(),
		LogBytes: v.logWritten.Load(), LogDropped: v.logDropped.Load(),
		MaxMemoryPages: v.maxPages.Load(), CallTime: v.calls.snapshot(), ExecTier: v.ExecTier(),
	}
	v.mu.Lock()
	s.Instances = len(v.instances)
	for in := range v.instances {
		s.Calls += in.calls.Load()
		s.MemoryPages += in.pages.Load()
	}
	v.mu.Unlock()
	select {
	case <-v.done:
		s.Closed = true
	default:
	}
	return s
}
