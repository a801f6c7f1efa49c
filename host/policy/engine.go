package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Defaults of EngineOptions.
const (
	// DefaultQuarantineAfter is K: a version that fails this many calls
	// of a kind in a row serves only the fallback until replaced.
	DefaultQuarantineAfter = 20
	// DefaultLogEvery is the burst window: failures of one active
	// version are logged at most once per window, with a count.
	DefaultLogEvery = 10 * time.Second
)

// EngineOptions configure an Engine. The zero value is usable.
type EngineOptions struct {
	Logger   *slog.Logger
	Observer Observer
	// DefaultTier names the route kind's fallback tier: "economy",
	// "standard" or "premium"; empty or unknown: "standard".
	DefaultTier string
	// QuarantineAfter: zero means DefaultQuarantineAfter.
	QuarantineAfter int
	// LogEvery: zero means DefaultLogEvery.
	LogEvery time.Duration
}

// Engine serves decisions with one active version per kind and implements
// Decider: it never fails, answering with the kind's fallback when the
// policy cannot. Swapping the active version is atomic; calls in flight
// finish on the version they started with. It is safe for concurrent use.
type Engine struct {
	log         *slog.Logger
	obs         Observer
	defaultTier atomic.Uint32
	quarantineK int32
	logEvery    int64
	slots       [len(abi.Kinds) + 1]atomic.Pointer[binding]
}

var _ Decider = (*Engine)(nil)

// binding is one activation of a version for a kind; its failure state
// starts fresh with every activation.
type binding struct {
	kind        abi.Kind
	v           *Version
	consecutive atomic.Int32
	quarantined atomic.Bool
	lastLog     atomic.Int64 // nanotime of the last failure log line
	suppressed  atomic.Int64 // failures since that line
	// interpreted: the quarantine was earned while the version ran
	// interpreted (see blocked).
	interpreted atomic.Bool
}

// blocked reports whether b's version is in quarantine. A quarantine
// earned while the version ran interpreted (decisions 20 to 30 times
// slower, which a deadline sized for compiled code may not fit) is
// lifted once the version runs compiled, with a fresh count of
// failures: the compiled version is judged on its own calls, and
// quarantined again after QuarantineAfter failures in a row if it
// fails as well. The hot path reads one flag.
func (b *binding) blocked(e *Engine) bool {
	if !b.quarantined.Load() {
		return false
	}
	if !b.interpreted.Load() || b.v.ExecTier() != Compiled || !b.interpreted.CompareAndSwap(true, false) {
		return b.quarantined.Load()
	}
	b.consecutive.Store(0)
	b.quarantined.Store(false)
	e.log.Info("policy quarantine lifted: the version now runs compiled",
		"kind", b.kind.String(), "policy", b.v.name, "version", b.v.digest)
	return false
}

// NewEngine returns an engine with no active versions: every decision is
// the fallback until Activate.
func NewEngine(opts EngineOptions) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.QuarantineAfter <= 0 {
		opts.QuarantineAfter = DefaultQuarantineAfter
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = DefaultLogEvery
	}
	e := &Engine{log: opts.Logger, obs: opts.Observer, quarantineK: int32(opts.QuarantineAfter), logEvery: int64(opts.LogEvery)}
	tier, ok := ParseTier(opts.DefaultTier)
	if !ok {
		tier = abi.TierStandard
	}
	e.defaultTier.Store(uint32(tier))
	return e
}

// SetDefaultTier changes the route kind's fallback tier.
func (e *Engine) SetDefaultTier(t abi.Tier) { e.defaultTier.Store(uint32(t)) }

func validKind(k abi.Kind) bool { return k >= abi.KindCache && k <= abi.KindCompress }

// Activate makes v the active version for kind and returns the version it
// replaced (nil if none). The caller decides what happens to the previous
// version: keep it for a rollback, or Close it (it drains first) when no
// other kind has it active. v must handle kind.
func (e *Engine) Activate(kind abi.Kind, v *Version) (*Version, error) {
	if !validKind(kind) {
		return nil, fmt.Errorf("policy: activate: unknown kind %d", kind)
	}
	if v == nil {
		return nil, errors.New("policy: activate: nil version")
	}
	if !v.Handles(kind) {
		return nil, fmt.Errorf("policy: activate %s@%s for %s: %w", v.name, v.digest, kind, ErrKind)
	}
	old := e.slots[kind].Swap(&binding{kind: kind, v: v})
	e.log.Info("policy activated", "kind", kind.String(), "policy", v.name, "version", v.digest)
	if old == nil {
		return nil, nil
	}
	return old.v, nil
}

// Replace activates v for kind and closes the version it replaced unless
// another kind of this engine still has it active.
func (e *Engine) Replace(kind abi.Kind, v *Version) error {
	prev, err := e.Activate(kind, v)
	if err != nil || prev == nil || prev == v {
		return err
	}
	for _, k := range abi.Kinds {
		if b := e.slots[k].Load(); b != nil && b.v == prev {
			return nil
		}
	}
	prev.Close()
	return nil
}

// Deactivate removes kind's active version (decisions fall back) and
// returns it.
func (e *Engine) Deactivate(kind abi.Kind) *Version {
	if !validKind(kind) {
		return nil
	}
	if old := e.slots[kind].Swap(nil); old != nil {
		return old.v
	}
	return nil
}

// Active returns the active version of kind, or nil.
func (e *Engine) Active(kind abi.Kind) *Version {
	if !validKind(kind) {
		return nil
	}
	if b := e.slots[kind].Load(); b != nil {
		return b.v
	}
	return nil
}

// ActiveInfo describes the active version of one kind.
type ActiveInfo struct {
	Kind        abi.Kind
	Stats       VersionStats
	Quarantined bool
	// ConsecutiveFailures is the current run of failed calls.
	ConsecutiveFailures int
}

// List returns the active version of every kind that has one, with stats.
func (e *Engine) List() []ActiveInfo {
	var out []ActiveInfo
	for _, k := range abi.Kinds {
		b := e.slots[k].Load()
		if b == nil {
			continue
		}
		out = append(out, ActiveInfo{Kind: k, Stats: b.v.Stats(), Quarantined: b.blocked(e), ConsecutiveFailures: int(b.consecutive.Load())})
	}
	return out
}

// Close deactivates and closes every active version (each after it
// drains).
func (e *Engine) Close() {
	seen := map[*Version]bool{}
	for _, k := range abi.Kinds {
		if v := e.Deactivate(k); v != nil && !seen[v] {
			seen[v] = true
			v.Close()
		}
	}
}

// Ready reports nil when every kind has an active version that is not
// quarantined, else an error naming the kinds served by fallback. It is
// meant for an informative readiness check.
func (e *Engine) Ready(ctx context.Context) error {
	var missing []string
	for _, k := range abi.Kinds {
		b := e.slots[k].Load()
		switch {
		case b == nil:
			missing = append(missing, k.String()+": no policy (fallback)")
		case b.blocked(e):
			missing = append(missing, k.String()+": "+b.v.name+"@"+b.v.digest+" quarantined (fallback)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("policy: %v", missing)
	}
	return nil
}

// pick returns the binding to use for kind, and whether a reference on
// its version is held. A version found closing is retried while the slot
// changes (a swap in progress); a closed version still active serves
// fallbacks.
func (e *Engine) pick(kind abi.Kind) (*binding, bool) {
	for {
		b := e.slots[kind].Load()
		if b == nil {
			return nil, false
		}
		if b.v.acquireRef() {
			return b, true
		}
		if e.slots[kind].Load() == b {
			return b, false
		}
	}
}

// result completes r and reports the decision.
func (e *Engine) result(kind abi.Kind, b *binding, start time.Time, outcome Outcome) Result {
	r := Result{Kind: kind, Outcome: outcome, Duration: time.Since(start)}
	if b != nil {
		r.Policy, r.Version = b.v.name, b.v.digest
	}
	if e.obs != nil {
		e.obs.Decision(kind, r.Policy, r.Version, outcome, r.Duration)
	}
	return r
}

// succeeded resets the run of failures; the write happens only when
// there was one, so the hot path only reads the shared counter.
func (b *binding) succeeded() {
	if b.consecutive.Load() != 0 {
		b.consecutive.Store(0)
	}
}

// failed counts a failure, logs once per burst and quarantines after K
// in a row. A call that found no free instance in time (ErrUnavailable)
// says the host is saturated, not that the policy is broken: it is served
// the fallback and logged but does not count towards quarantine, so a
// burst of load cannot switch a healthy policy off until it is replaced.
func (e *Engine) failed(b *binding, err error) {
	n := b.consecutive.Load()
	if !errors.Is(err, ErrUnavailable) {
		n = b.consecutive.Add(1)
	}
	if n >= e.quarantineK && b.quarantined.CompareAndSwap(false, true) {
		b.interpreted.Store(b.v.ExecTier() == Interpreted)
		e.log.Error("policy quarantined: serving the fallback until replaced",
			"kind", b.kind.String(), "policy", b.v.name, "version", b.v.digest, "consecutive_failures", n, "err", err)
		if e.obs != nil {
			e.obs.Quarantined(b.kind, b.v.name, b.v.digest)
		}
	}
	now := nanotime()
	last := b.lastLog.Load()
	if (last == 0 || now-last >= e.logEvery) && b.lastLog.CompareAndSwap(last, now) {
		e.log.Warn("policy failed: fallback decision served",
			"kind", b.kind.String(), "policy", b.v.name, "version", b.v.digest,
			"outcome", outcomeOf(err).String(), "failures_since_last_log", b.suppressed.Swap(0)+1, "err", err)
		return
	}
	b.suppressed.Add(1)
}

// Cache implements Decider.
func (e *Engine) Cache(ctx context.Context, req *abi.CacheRequest) (abi.CacheDecision, Result) {
	var d abi.CacheDecision
	_, r := e.CacheInto(ctx, req, &d, nil)
	return d, r
}

// CacheInto is Cache for callers that decide often and keep little: the
// decision goes into d (its Tags list reused when large enough) and its
// strings are views of the bytes appended to buf, which CacheInto returns.
// d's strings stay valid until the caller reuses that buffer, so a hot
// path can run without allocating. On failure d is the fallback.
func (e *Engine) CacheInto(ctx context.Context, req *abi.CacheRequest, d *abi.CacheDecision, buf []byte) ([]byte, Result) {
	start := time.Now()
	b, held := e.pick(abi.KindCache)
	if b == nil {
		fallbackCacheInto(d)
		return buf, e.result(abi.KindCache, nil, start, OutcomeFallback)
	}
	if !held || b.blocked(e) {
		if held {
			b.v.releaseRef()
		}
		fallbackCacheInto(d)
		return buf, e.result(abi.KindCache, b, start, OutcomeFallback)
	}
	buf, err := b.v.cache(ctx, req, d, buf)
	b.v.releaseRef()
	if err != nil {
		e.failed(b, err)
		fallbackCacheInto(d)
		return buf, e.result(abi.KindCache, b, start, outcomeOf(err))
	}
	b.succeeded()
	return buf, e.result(abi.KindCache, b, start, OutcomeOK)
}

// fallbackCacheInto sets d to FallbackCache, keeping its Tags capacity.
func fallbackCacheInto(d *abi.CacheDecision) {
	*d = abi.CacheDecision{Action: abi.CacheBypass, Tags: d.Tags[:0]}
}

// Route implements Decider.
func (e *Engine) Route(ctx context.Context, req *abi.RouteRequest) (abi.RouteDecision, Result) {
	start := time.Now()
	tier := abi.Tier(e.defaultTier.Load())
	b, held := e.pick(abi.KindRoute)
	if b == nil {
		return FallbackRoute(tier), e.result(abi.KindRoute, nil, start, OutcomeFallback)
	}
	if !held || b.blocked(e) {
		if held {
			b.v.releaseRef()
		}
		return FallbackRoute(tier), e.result(abi.KindRoute, b, start, OutcomeFallback)
	}
	d, err := b.v.route(ctx, req)
	b.v.releaseRef()
	if err != nil {
		e.failed(b, err)
		return FallbackRoute(tier), e.result(abi.KindRoute, b, start, outcomeOf(err))
	}
	b.succeeded()
	return d, e.result(abi.KindRoute, b, start, OutcomeOK)
}

// Compress implements Decider.
func (e *Engine) Compress(ctx context.Context, req *abi.CompressRequest) (abi.CompressDecision, Result) {
	start := time.Now()
	b, held := e.pick(abi.KindCompress)
	if b == nil {
		return FallbackCompress(req), e.result(abi.KindCompress, nil, start, OutcomeFallback)
	}
	if !held || b.blocked(e) {
		if held {
			b.v.releaseRef()
		}
		return FallbackCompress(req), e.result(abi.KindCompress, b, start, OutcomeFallback)
	}
	d, err := b.v.compress(ctx, req)
	b.v.releaseRef()
	if err != nil {
		e.failed(b, err)
		return FallbackCompress(req), e.result(abi.KindCompress, b, start, outcomeOf(err))
	}
	b.succeeded()
	return d, e.result(abi.KindCompress, b, start, OutcomeOK)
}
