// Package rollout keeps policy versions and moves them into service: the
// version store, the activation pipeline (signature → validate → compile →
// warm → bundled case files → atomic switch → the old version drains and
// is closed), shadow testing of a candidate on sampled live traffic,
// automatic rollback of a freshly activated version that falls back too
// often, and fleet convergence through a shared store and change
// notifications.
//
// A Manager owns one policy.Engine: every version the engine serves came
// through the pipeline. In local mode the store is a MemStore and the
// policy directory is watched (WatchDir); in fleet mode the store is
// shared (host/store/pgpolicy) and a Notifier tells every instance to
// converge on the store's active set (Sync).
package rollout

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Errors of the Manager besides ErrNotFound and *StepError.
var (
	// ErrInvalid: the request names a bad kind, configuration or case file.
	ErrInvalid = errors.New("rollout: invalid")
	// ErrNoRollbackTarget: the kind has no previous version.
	ErrNoRollbackTarget = errors.New("rollout: no previous version to roll back to")
	// ErrClosed: the manager is closed.
	ErrClosed = errors.New("rollout: manager closed")
)

// Steps of the activation pipeline, as StepError.Step.
const (
	StepSignature = "signature"
	StepValidate  = "validate"
	StepCompile   = "compile"
	StepWarm      = "warm"
	StepSelfTest  = "self-test"
	StepSwitch    = "switch"
)

// StepError is why a version did not pass the activation pipeline: the
// step that failed and the cause. The active version is untouched.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return "rollout: " + e.Step + ": " + strings.TrimPrefix(e.Err.Error(), "rollout: ")
}

func (e *StepError) Unwrap() error { return e.Err }

// Notifier carries "the store changed" messages between the instances of a
// fleet: PostgreSQL LISTEN/NOTIFY (host/store/pgpolicy) or Redis pub/sub
// (RedisNotifier).
type Notifier interface {
	// Notify tells every instance (this one included) that the store
	// changed.
	Notify(ctx context.Context) error
	// Listen calls fn for each notification until ctx ends. It
	// reconnects by itself and returns only when ctx is done.
	Listen(ctx context.Context, fn func())
}

// Observer receives the rollout's events for metrics. A nil Observer is
// a no-op; implementations must be safe for concurrent use.
type Observer interface {
	// ShadowCompared reports one shadow comparison: whether the candidate
	// agreed with the active version and both decisions' latencies.
	ShadowCompared(kind abi.Kind, policy, version string, agree bool, candidate, active time.Duration)
	// Activation reports one pass of the pipeline: step is empty on
	// success, else the failed step.
	Activation(kind abi.Kind, policy, version, step string)
	// RolledBack reports an automatic rollback from one version to
	// another (to is empty when there was none to go back to).
	RolledBack(kind abi.Kind, policy, from, to, reason string)
}

// Config configures a Manager. Runtime and Store are required.
type Config struct {
	Runtime *policy.Runtime
	Store   Store
	// Engine configures the engine the manager creates; its Observer still
	// receives every decision.
	Engine policy.EngineOptions
	// PublicKey, when set, makes a valid signature mandatory.
	PublicKey ed25519.PublicKey
	Logger    *slog.Logger
	Observer  Observer
	// Instance names this instance in status reports; empty: "local".
	Instance string
	// Notifier, when set, makes this a fleet member (see Start).
	Notifier Notifier
	// PollInterval re-reads the store this often as a safety net under the
	// notifications; zero: 10 s with a Notifier, never without.
	PollInterval time.Duration
	// MinInstances and MaxInstances size each version's pool (policy.Spec).
	MinInstances, MaxInstances int
	// ShadowSample is the default share of calls copied to a shadow
	// candidate (0.1 when zero); ShadowQueue bounds the comparisons waiting
	// (1024 when zero): beyond it samples are dropped, never waited for.
	ShadowSample float64
	ShadowQueue  int
	// Rollback: a version activated less than RollbackWindow ago (1 min
	// when zero) whose fallback rate exceeds RollbackThreshold (0.5 when
	// zero) over at least RollbackMinCalls calls (50 when zero) is rolled
	// back and quarantined. A negative threshold disables it.
	RollbackThreshold float64
	RollbackWindow    time.Duration
	RollbackMinCalls  int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Instance == "" {
		c.Instance = "local"
	}
	if c.PollInterval == 0 && c.Notifier != nil {
		c.PollInterval = 10 * time.Second
	}
	if c.ShadowSample <= 0 {
		c.ShadowSample = 0.1
	}
	if c.ShadowQueue <= 0 {
		c.ShadowQueue = 1024
	}
	if c.RollbackThreshold == 0 {
		c.RollbackThreshold = 0.5
	}
	if c.RollbackWindow <= 0 {
		c.RollbackWindow = time.Minute
	}
	if c.RollbackMinCalls <= 0 {
		c.RollbackMinCalls = 50
	}
}

// slot is the version this instance serves for one kind.
type slot struct {
	rec Record
	v   *policy.Version
}

// Manager runs the activation pipeline and owns the engine's versions. It
// is safe for concurrent use.
type Manager struct {
	cfg   Config
	rt    *policy.Runtime
	eng   *policy.Engine
	store Store
	log   *slog.Logger
	obs   Observer
	dec   *Decider

	actMu  sync.Mutex // serialises pipelines and switches
	mu     sync.Mutex // guards the maps below
	active map[abi.Kind]*slot
	local  map[int64]string // this instance's rejections: id → reason
	fresh  [4]atomic.Pointer[freshWatch]
	// verified are the modules most recently read and checked against
	// their record's digest and signature, most recent last. Records
	// never change, so activating one of them again (a rollback, a swap
	// back) skips reading, hashing and verifying a few MiB.
	verified []verifiedModule

	syncCh chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// New returns a manager with an engine that serves nothing yet: load the
// policy directory (ImportDir) or the store's active set (Sync), then
// Start.
func New(cfg Config) (*Manager, error) {
	if cfg.Runtime == nil || cfg.Store == nil {
		return nil, errors.New("rollout: Runtime and Store are required")
	}
	cfg.setDefaults()
	m := &Manager{cfg: cfg, rt: cfg.Runtime, store: cfg.Store, log: cfg.Logger, obs: cfg.Observer,
		active: map[abi.Kind]*slot{}, local: map[int64]string{}, syncCh: make(chan struct{}, 1)}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	eo := cfg.Engine
	eo.Observer = &tap{m: m, next: eo.Observer}
	if eo.Logger == nil {
		eo.Logger = cfg.Logger
	}
	m.eng = policy.NewEngine(eo)
	m.dec = &Decider{eng: m.eng, m: m}
	return m, nil
}

// Engine returns the engine the manager feeds.
func (m *Manager) Engine() *policy.Engine { return m.eng }

// Decider returns the decider to serve requests with: the engine, plus the
// sampling of calls for shadow candidates.
func (m *Manager) Decider() *Decider { return m.dec }

// Instance returns this instance's name.
func (m *Manager) Instance() string { return m.cfg.Instance }

// Start runs the fleet loops: notifications and the periodic re-read of
// the store, each followed by Sync. Without a Notifier and PollInterval it
// does nothing.
func (m *Manager) Start() {
	if m.cfg.Notifier != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.cfg.Notifier.Listen(m.ctx, m.requestSync)
		}()
	}
	if m.cfg.Notifier != nil || m.cfg.PollInterval > 0 {
		m.wg.Add(1)
		go m.syncLoop()
	}
}

func (m *Manager) requestSync() {
	select {
	case m.syncCh <- struct{}{}:
	default:
	}
}

func (m *Manager) syncLoop() {
	defer m.wg.Done()
	var tick <-chan time.Time
	if m.cfg.PollInterval > 0 {
		t := time.NewTicker(m.cfg.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.syncCh:
		case <-tick:
		}
		if err := m.Sync(m.ctx); err != nil && m.ctx.Err() == nil {
			m.log.Warn("rollout: sync with the version store failed", "err", err)
		}
	}
}

// Close stops the loops, every shadow and the engine (each version after
// it drains). The runtime is the caller's.
func (m *Manager) Close() {
	if !m.closed.CompareAndSwap(false, true) {
		return
	}
	m.cancel()
	m.wg.Wait()
	m.actMu.Lock()
	defer m.actMu.Unlock()
	for _, k := range allKinds {
		m.dec.stopShadow(k)
	}
	m.eng.Close()
}

var allKinds = []abi.Kind{abi.KindCache, abi.KindRoute, abi.KindCompress}

// Upload is a new version pushed through the admin API.
type Upload struct {
	Kind        string
	Name        string
	Wasm        []byte
	Config      json.RawMessage
	DeadlineMS  float64
	DefaultTier string
	Signature   string
	Cases       json.RawMessage
	Source      string
}

// Push stores a new version, inactive. Bad input is ErrInvalid.
func (m *Manager) Push(ctx context.Context, u Upload) (Record, error) {
	if _, ok := abi.ParseKind(u.Kind); !ok {
		return Record{}, invalid("kind", "want cache, route or compress")
	}
	if len(u.Wasm) == 0 {
		return Record{}, invalid("wasm", "empty module")
	}
	if len(u.Config) > 0 && !json.Valid(u.Config) {
		return Record{}, invalid("config", "not valid JSON")
	}
	if len(u.Cases) > 0 {
		var cs []policytest.Case
		if err := json.Unmarshal(u.Cases, &cs); err != nil {
			return Record{}, &InvalidError{Field: "cases", Reason: "want a JSON array of cases", Err: err}
		}
	}
	if u.DeadlineMS < 0 {
		return Record{}, invalid("deadline_ms", "negative")
	}
	if u.DefaultTier != "" {
		if _, ok := policy.ParseTier(u.DefaultTier); !ok {
			return Record{}, invalid("default_tier", "want economy, standard or premium")
		}
	}
	if u.Name == "" {
		u.Name = u.Kind
	}
	if u.Source == "" {
		u.Source = "upload"
	}
	rec := Record{Digest: policy.ModuleSHA256(u.Wasm), Kind: u.Kind, Name: u.Name, Config: u.Config,
		DeadlineMS: u.DeadlineMS, DefaultTier: u.DefaultTier, Signature: strings.TrimSpace(u.Signature),
		Cases: u.Cases, Status: StatusInactive, Source: u.Source}
	if err := m.store.Put(ctx, &rec, u.Wasm); err != nil {
		return Record{}, fmt.Errorf("rollout: store version: %w", err)
	}
	return rec, nil
}

// List returns every stored version, newest first, with this instance's
// own rejection reasons filled in where the store has none.
func (m *Manager) List(ctx context.Context) ([]Record, error) {
	recs, err := m.store.List(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range recs {
		if r, ok := m.local[recs[i].ID]; ok && recs[i].Reason == "" {
			recs[i].Reason = r
		}
	}
	return recs, nil
}

// Get returns one stored version.
func (m *Manager) Get(ctx context.Context, id int64) (Record, error) { return m.store.Get(ctx, id) }

// load runs the pipeline up to, not including, the switch: signature,
// validation, compilation, warm instances and the bundled case files.
// retainedVerified bounds Manager.verified.
const retainedVerified = 4

type verifiedModule struct {
	id          int64
	digest, sig string
	wasm        []byte
}

// verifiedWasm returns rec's module bytes, read from the store and
// checked against its digest and, when a key is configured, its
// signature; or the bytes of an earlier such check.
func (m *Manager) verifiedWasm(ctx context.Context, rec Record) ([]byte, error) {
	m.mu.Lock()
	for i, vm := range m.verified {
		if vm.id == rec.ID && vm.digest == rec.Digest && vm.sig == rec.Signature {
			m.verified = append(append(m.verified[:i:i], m.verified[i+1:]...), vm)
			m.mu.Unlock()
			return vm.wasm, nil
		}
	}
	m.mu.Unlock()
	wasm, err := m.store.Wasm(ctx, rec.ID)
	if err != nil {
		return nil, fmt.Errorf("rollout: read module: %w", err)
	}
	if policy.ModuleSHA256(wasm) != rec.Digest {
		return nil, &StepError{StepValidate, errors.New("module bytes do not match the recorded digest")}
	}
	if m.cfg.PublicKey != nil {
		if err := Verify(m.cfg.PublicKey, wasm, rec.Signature); err != nil {
			return nil, &StepError{StepSignature, err}
		}
	}
	m.mu.Lock()
	m.verified = append(m.verified, verifiedModule{rec.ID, rec.Digest, rec.Signature, wasm})
	if len(m.verified) > retainedVerified {
		m.verified = slices.Delete(m.verified, 0, 1)
	}
	m.mu.Unlock()
	return wasm, nil
}

func (m *Manager) load(ctx context.Context, rec Record) (*policy.Version, error) {
	kind, ok := abi.ParseKind(rec.Kind)
	if !ok {
		return nil, &StepError{StepValidate, fmt.Errorf("unknown kind %q", rec.Kind)}
	}
	wasm, err := m.verifiedWasm(ctx, rec)
	if err != nil {
		return nil, err
	}
	spec := policy.Spec{Name: rec.Name, Config: rec.Config, Digest: rec.Digest, MinInstances: m.cfg.MinInstances, MaxInstances: m.cfg.MaxInstances}
	// Warm as many instances as the version serving now has grown to, so
	// that the first requests after the switch find them ready instead of
	// starting instances on their own path.
	if cur := m.eng.Active(kind); cur != nil {
		if n := cur.Stats().Instances; n > spec.MinInstances {
			spec.MinInstances = n
			if spec.MaxInstances > 0 && n > spec.MaxInstances {
				spec.MinInstances = spec.MaxInstances
			}
		}
	}
	if rec.DeadlineMS > 0 {
		spec.Deadline = time.Duration(rec.DeadlineMS * float64(time.Millisecond))
	}
	v, err := m.rt.Load(ctx, spec, wasm)
	if err != nil {
		var le *policy.LoadError
		switch {
		case errors.As(err, &le) && le.Item == "module" && strings.Contains(err.Error(), "compile"):
			return nil, &StepError{StepCompile, err}
		case errors.As(err, &le) && le.Item != "instance" && le.Item != "init":
			return nil, &StepError{StepValidate, err}
		default:
			return nil, &StepError{StepWarm, err}
		}
	}
	if !v.Handles(kind) {
		closeVersion(v)
		return nil, &StepError{StepValidate, fmt.Errorf("the module has no %s handler (it handles %v)", kind, v.Kinds())}
	}
	if len(rec.Cases) > 0 {
		var cases []policytest.Case
		if err := json.Unmarshal(rec.Cases, &cases); err != nil {
			closeVersion(v)
			return nil, &StepError{StepSelfTest, fmt.Errorf("case files: %w", err)}
		}
		var failed []string
		for _, r := range policytest.RunAll(ctx, v, kind, cases) {
			if !r.Passed() {
				failed = append(failed, r.String())
			}
		}
		if len(failed) > 0 {
			closeVersion(v)
			return nil, &StepError{StepSelfTest, fmt.Errorf("%d of %d cases failed; first: %s", len(failed), len(cases), failed[0])}
		}
	}
	return v, nil
}

func closeVersion(v *policy.Version) { v.Close() }

// reject records a failed pipeline: in the store when the version is not
// serving anywhere, and for this instance.
func (m *Manager) reject(ctx context.Context, rec Record, err error) {
	m.mu.Lock()
	m.local[rec.ID] = err.Error()
	m.mu.Unlock()
	if rec.Status != StatusActive && rec.Status != StatusShadow {
		if serr := m.store.SetStatus(ctx, rec.ID, StatusRejected, err.Error()); serr != nil {
			m.log.Warn("rollout: record rejection", "id", rec.ID, "err", serr)
		}
	}
	step := ""
	var se *StepError
	if errors.As(err, &se) {
		step = se.Step
	}
	if k, ok := abi.ParseKind(rec.Kind); ok && m.obs != nil {
		m.obs.Activation(k, rec.Name, rec.Short(), step)
	}
	m.log.Warn("rollout: version rejected; the active version keeps serving",
		"id", rec.ID, "kind", rec.Kind, "policy", rec.Name, "version", rec.Short(), "err", err)
}

// Activate runs the whole pipeline on version id and, if every step
// passes, makes it the active version of its kind on this instance and in
// the store (which tells the fleet). On failure the active version keeps
// serving and the error (a *StepError) says why; the store records it.
func (m *Manager) Activate(ctx context.Context, id int64) (Record, error) {
	if m.closed.Load() {
		return Record{}, ErrClosed
	}
	m.actMu.Lock()
	defer m.actMu.Unlock()
	rec, err := m.store.Get(ctx, id)
	if err != nil {
		return Record{}, err
	}
	kind, _ := abi.ParseKind(rec.Kind)
	if cur := m.slot(kind); cur != nil && cur.rec.ID == id && rec.Status == StatusActive {
		return rec, nil
	}
	v, err := m.load(ctx, rec)
	if err != nil {
		m.reject(ctx, rec, err)
		rec, _ = m.store.Get(ctx, id)
		if rec.Reason == "" {
			rec.Reason = err.Error()
		}
		return rec, err
	}
	if err := m.store.Activate(ctx, id, "", ""); err != nil {
		closeVersion(v)
		return rec, &StepError{StepSwitch, fmt.Errorf("record activation: %w", err)}
	}
	rec, _ = m.store.Get(ctx, id)
	if m.dec.shadowID(kind) == id {
		m.dec.stopShadow(kind)
	}
	m.switchTo(kind, rec, v, true)
	m.notify(ctx)
	return rec, nil
}

// Rollback makes the most recently active previous version of kind active
// again, through the pipeline. The version it replaces becomes previous.
func (m *Manager) Rollback(ctx context.Context, kind abi.Kind) (Record, error) {
	m.actMu.Lock()
	defer m.actMu.Unlock()
	return m.rollbackLocked(ctx, kind, "", "")
}

func (m *Manager) rollbackLocked(ctx context.Context, kind abi.Kind, oldStatus Status, reason string) (Record, error) {
	recs, err := m.store.List(ctx)
	if err != nil {
		return Record{}, err
	}
	target, ok := rollbackTarget(recs, kind.String())
	if !ok {
		return Record{}, fmt.Errorf("%w (kind %s)", ErrNoRollbackTarget, kind)
	}
	v, err := m.load(ctx, target)
	if err != nil {
		m.reject(ctx, target, err)
		return target, err
	}
	if err := m.store.Activate(ctx, target.ID, oldStatus, reason); err != nil {
		closeVersion(v)
		return target, &StepError{StepSwitch, fmt.Errorf("record activation: %w", err)}
	}
	target, _ = m.store.Get(ctx, target.ID)
	m.switchTo(kind, target, v, false)
	m.notify(ctx)
	return target, nil
}

func (m *Manager) slot(kind abi.Kind) *slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[kind]
}

// switchTo makes v active for kind: the engine's atomic swap, then the old
// version drains and is closed. watch starts the rollback watch.
func (m *Manager) switchTo(kind abi.Kind, rec Record, v *policy.Version, watch bool) {
	if kind == abi.KindRoute && rec.DefaultTier != "" {
		if t, ok := policy.ParseTier(rec.DefaultTier); ok {
			m.eng.SetDefaultTier(t)
		}
	}
	m.fresh[kind].Store(nil)
	old := m.eng.Active(kind)
	if err := m.eng.Replace(kind, v); err != nil {
		m.log.Error("rollout: switch failed", "kind", kind, "err", err)
		closeVersion(v)
		return
	}
	if watch && m.cfg.RollbackThreshold > 0 {
		m.fresh[kind].Store(&freshWatch{id: rec.ID, version: v.Digest(), start: time.Now()})
	}
	m.mu.Lock()
	m.active[kind] = &slot{rec: rec, v: v}
	delete(m.local, rec.ID)
	m.mu.Unlock()
	from := ""
	if old != nil {
		from = old.Digest()
	}
	if m.obs != nil {
		m.obs.Activation(kind, rec.Name, v.Digest(), "")
	}
	m.log.Info("rollout: version active", "kind", kind, "id", rec.ID, "policy", rec.Name, "version", v.Digest(), "replaced", from)
}

func (m *Manager) notify(ctx context.Context) {
	if m.cfg.Notifier == nil {
		return
	}
	if err := m.cfg.Notifier.Notify(ctx); err != nil {
		m.log.Warn("rollout: notify the fleet failed; instances converge at their next poll", "err", err)
	}
}

// Sync converges this instance on the store: for each kind, the store's
// active version is loaded (through the pipeline) and switched to when it
// is not the one served here, and the store's shadow candidates are
// started or stopped. A version that fails here is reported and the
// current one keeps serving.
func (m *Manager) Sync(ctx context.Context) error {
	m.actMu.Lock()
	defer m.actMu.Unlock()
	recs, err := m.store.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, kind := range allKinds {
		if r, ok := activeOf(recs, kind.String()); ok {
			cur := m.slot(kind)
			m.mu.Lock()
			_, failedHere := m.local[r.ID]
			m.mu.Unlock()
			if (cur == nil || cur.rec.ID != r.ID) && !failedHere {
				v, err := m.load(ctx, r)
				if err != nil {
					m.reject(ctx, r, err)
					errs = append(errs, err)
				} else {
					m.switchTo(kind, r, v, true)
				}
			}
		}
		var shadow *Record
		for i := range recs {
			if recs[i].Kind == kind.String() && recs[i].Status == StatusShadow {
				shadow = &recs[i]
				break
			}
		}
		switch cur := m.dec.shadowID(kind); {
		case shadow == nil && cur != 0:
			m.dec.stopShadow(kind)
		case shadow != nil && cur != shadow.ID:
			v, err := m.load(ctx, *shadow)
			if err != nil {
				m.reject(ctx, *shadow, err)
				errs = append(errs, err)
				continue
			}
			m.dec.startShadow(kind, *shadow, v, m.cfg.ShadowSample)
		}
	}
	return errors.Join(errs...)
}

// StartShadow runs version id beside the active version of its kind on a
// sample of live traffic (sample in (0, 1]; zero: the configured default).
// The candidate goes through the pipeline first, up to the switch.
func (m *Manager) StartShadow(ctx context.Context, id int64, sample float64) (Record, error) {
	m.actMu.Lock()
	defer m.actMu.Unlock()
	rec, err := m.store.Get(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if sample <= 0 {
		sample = m.cfg.ShadowSample
	}
	if sample > 1 {
		return rec, invalid("sample", "want a share in (0, 1]")
	}
	kind, _ := abi.ParseKind(rec.Kind)
	if cur := m.slot(kind); cur != nil && cur.rec.ID == id {
		return rec, invalid("version", "it is the active version of "+kind.String())
	}
	v, err := m.load(ctx, rec)
	if err != nil {
		m.reject(ctx, rec, err)
		rec, _ = m.store.Get(ctx, id)
		return rec, err
	}
	if prev := m.dec.shadowID(kind); prev != 0 && prev != id {
		_ = m.store.SetStatus(ctx, prev, StatusInactive, "")
	}
	if err := m.store.SetStatus(ctx, id, StatusShadow, ""); err != nil {
		closeVersion(v)
		return rec, err
	}
	m.dec.startShadow(kind, rec, v, sample)
	m.notify(ctx)
	rec, _ = m.store.Get(ctx, id)
	return rec, nil
}

// StopShadow stops the shadow candidate of kind, if any, and returns its
// final comparison figures.
func (m *Manager) StopShadow(ctx context.Context, kind abi.Kind) (ShadowStats, error) {
	m.actMu.Lock()
	defer m.actMu.Unlock()
	st, ok := m.dec.shadowStats(kind)
	if !ok {
		return ShadowStats{}, fmt.Errorf("%w: no shadow running for %s", ErrNotFound, kind)
	}
	m.dec.stopShadow(kind)
	if err := m.store.SetStatus(ctx, st.ID, StatusInactive, ""); err != nil {
		return st, err
	}
	m.notify(ctx)
	return st, nil
}

// ActiveStatus is the version this instance serves for one kind.
type ActiveStatus struct {
	Kind    string `json:"kind"`
	ID      int64  `json:"id"`
	Policy  string `json:"policy"`
	Version string `json:"version"`
	Source  string `json:"source,omitempty"`
	// Since is when it became active here.
	Calls       int64 `json:"calls"`
	Failures    int64 `json:"failures"`
	Timeouts    int64 `json:"timeouts"`
	Traps       int64 `json:"traps"`
	Instances   int   `json:"instances"`
	Quarantined bool  `json:"quarantined"`
	// Resources are the version's per-policy resource figures (see
	// policy.VersionStats).
	Resources PolicyResources `json:"resources"`
}

// PolicyResources are a version's resource figures for the admin API.
type PolicyResources struct {
	CallP50Micros  float64 `json:"call_p50_us"`
	CallP99Micros  float64 `json:"call_p99_us"`
	CallMaxMicros  float64 `json:"call_max_us"`
	Recycles       int64   `json:"recycles"`
	ForcedRecycles int64   `json:"forced_recycles"`
	LogBytes       int64   `json:"log_bytes"`
	LogDropped     int64   `json:"log_dropped_bytes"`
	MemoryPages    int64   `json:"memory_pages"`
	MaxMemoryPages int64   `json:"max_memory_pages"`
}

// ResourcesOf extracts the resource figures of a version's stats.
func ResourcesOf(vs policy.VersionStats) PolicyResources {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return PolicyResources{
		CallP50Micros: us(vs.CallTime.Quantile(0.5)), CallP99Micros: us(vs.CallTime.Quantile(0.99)), CallMaxMicros: us(vs.CallTime.Max),
		Recycles: vs.Recycles, ForcedRecycles: vs.ForcedRecycles, LogBytes: vs.LogBytes, LogDropped: vs.LogDropped,
		MemoryPages: vs.MemoryPages, MaxMemoryPages: vs.MaxMemoryPages,
	}
}

// InstanceStatus is what one instance serves.
type InstanceStatus struct {
	Instance string         `json:"instance"`
	Active   []ActiveStatus `json:"active"`
	Shadows  []ShadowStats  `json:"shadows"`
	// Rejected lists this instance's pipeline failures: id → reason.
	Rejected map[int64]string `json:"rejected,omitempty"`
	// LiveInstances counts the runtime's live guest instances, all
	// versions together (old versions' instances leave it once closed).
	LiveInstances int `json:"live_instances"`
}

// Status reports what this instance serves.
func (m *Manager) Status() InstanceStatus {
	st := InstanceStatus{Instance: m.cfg.Instance, Active: []ActiveStatus{}, Shadows: []ShadowStats{}, LiveInstances: m.rt.Instances()}
	quar := map[abi.Kind]bool{}
	for _, a := range m.eng.List() {
		quar[a.Kind] = a.Quarantined
	}
	m.mu.Lock()
	for _, k := range allKinds {
		s := m.active[k]
		if s == nil || m.eng.Active(k) != s.v {
			continue
		}
		vs := s.v.Stats()
		st.Active = append(st.Active, ActiveStatus{Kind: k.String(), ID: s.rec.ID, Policy: s.rec.Name, Version: s.v.Digest(),
			Source: s.rec.Source, Calls: vs.Calls, Failures: vs.Failures, Timeouts: vs.Timeouts, Traps: vs.Traps,
			Instances: vs.Instances, Quarantined: quar[k], Resources: ResourcesOf(vs)})
	}
	if len(m.local) > 0 {
		st.Rejected = make(map[int64]string, len(m.local))
		for id, r := range m.local {
			st.Rejected[id] = r
		}
	}
	m.mu.Unlock()
	for _, k := range allKinds {
		if s, ok := m.dec.shadowStats(k); ok {
			st.Shadows = append(st.Shadows, s)
		}
	}
	return st
}

// freshWatch counts a freshly activated version's outcomes for the
// automatic rollback.
type freshWatch struct {
	id        int64
	version   string
	start     time.Time
	calls     atomic.Int64
	fallbacks atomic.Int64
	fired     atomic.Bool
}

// tap is the engine's observer: it feeds the rollback watch, then the
// configured observer.
type tap struct {
	m    *Manager
	next policy.Observer
}

var _ policy.Observer = (*tap)(nil)

func (t *tap) Decision(kind abi.Kind, pol, version string, outcome policy.Outcome, d time.Duration) {
	if t.next != nil {
		t.next.Decision(kind, pol, version, outcome, d)
	}
	if int(kind) >= len(t.m.fresh) {
		return
	}
	w := t.m.fresh[kind].Load()
	if w == nil || w.version != version {
		return
	}
	if time.Since(w.start) > t.m.cfg.RollbackWindow {
		t.m.fresh[kind].CompareAndSwap(w, nil)
		return
	}
	n := w.calls.Add(1)
	f := w.fallbacks.Load()
	if outcome != policy.OutcomeOK {
		f = w.fallbacks.Add(1)
	}
	if n >= int64(t.m.cfg.RollbackMinCalls) && float64(f)/float64(n) > t.m.cfg.RollbackThreshold &&
		!t.m.closed.Load() && w.fired.CompareAndSwap(false, true) {
		reason := fmt.Sprintf("automatic rollback: fallback rate %.0f%% over %d calls within %s of activation (threshold %.0f%%)",
			100*float64(f)/float64(n), n, time.Since(w.start).Round(time.Millisecond), 100*t.m.cfg.RollbackThreshold)
		t.m.wg.Add(1)
		go t.m.autoRollback(kind, w, reason)
	}
}

func (t *tap) InstanceCreated(pol, version string) {
	if t.next != nil {
		t.next.InstanceCreated(pol, version)
	}
}

func (t *tap) InstanceDiscarded(pol, version, reason string) {
	if t.next != nil {
		t.next.InstanceDiscarded(pol, version, reason)
	}
}

func (t *tap) Quarantined(kind abi.Kind, pol, version string) {
	if t.next != nil {
		t.next.Quarantined(kind, pol, version)
	}
}

// autoRollback rolls back a fresh version that falls back too often and
// quarantines it; without a previous version it is deactivated (its kind
// serves the fallback decision) and quarantined.
func (m *Manager) autoRollback(kind abi.Kind, w *freshWatch, reason string) {
	defer m.wg.Done()
	m.actMu.Lock()
	defer m.actMu.Unlock()
	cur := m.slot(kind)
	if cur == nil || cur.rec.ID != w.id || m.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	m.log.Warn("rollout: rolling back", "kind", kind, "id", w.id, "version", w.version, "reason", reason)
	to, err := m.rollbackLocked(ctx, kind, StatusQuarantined, reason)
	if err != nil {
		if !errors.Is(err, ErrNoRollbackTarget) {
			m.log.Error("rollout: automatic rollback failed", "kind", kind, "err", err)
		}
		if old := m.eng.Deactivate(kind); old != nil {
			closeVersion(old)
		}
		m.mu.Lock()
		delete(m.active, kind)
		m.mu.Unlock()
		_ = m.store.SetStatus(ctx, w.id, StatusQuarantined, reason)
		m.notify(ctx)
		to = Record{}
	}
	if m.obs != nil {
		m.obs.RolledBack(kind, cur.rec.Name, w.version, to.Short(), reason)
	}
}
