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
//
// # Concurrency
//
// Checking a candidate (reading, verifying, compiling, warming and
// self-testing it) holds no lock: a slow or never-ending candidate holds
// up neither a rollback nor another kind's push. Only the final switch of
// one kind (the store's record of it and the engine's swap) is serialised,
// per kind, and takes microseconds to milliseconds. The newest operation
// on a kind wins: starting an activation, rollback or sync of a kind
// supersedes the one in progress, which is abandoned (its caller gets
// ErrSuperseded at once; its candidate is closed when its check ends).
//
// The files: manager.go (configuration and life cycle), push.go (storing
// a version), check.go (the pipeline up to the switch), switch.go
// (activation, rollback and the per-kind lanes), fleet.go (Sync),
// autorollback.go, shadow.go, status.go, local.go (the policy directory),
// store.go (records and the in-memory store), sign.go, notify.go.
package rollout

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

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
	// Instance names this instance in status reports; empty: "local".
	Instance string
	// Notifier, when set, makes this a fleet member (see Start).
	Notifier Notifier
	// PollInterval re-reads the store this often as a safety net under the
	// notifications; zero: 10 s with a Notifier, never without.
	PollInterval time.Duration
	// MinInstances and MaxInstances size each version's pool (policy.Spec).
	MinInstances, MaxInstances int
	// CheckTimeout bounds the check of one candidate (up to the switch);
	// one still running after it is rejected at the step it was in.
	// Zero: DefaultCheckTimeout.
	CheckTimeout time.Duration
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

// DefaultCheckTimeout is Config.CheckTimeout's default: a candidate's
// check (start-up of its instances and its case files) may take 2 min.
const DefaultCheckTimeout = 2 * time.Minute

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
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = DefaultCheckTimeout
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
	dec   *Decider

	lanes [4]lane // by abi.Kind: the switch of each kind (switch.go)

	mu     sync.Mutex // guards the maps below and the lanes' operations
	active map[abi.Kind]*slot
	local  map[int64]string // this instance's rejections: id → reason
	fresh  [4]atomic.Pointer[freshWatch]
	// verified are the modules most recently read and checked against
	// their record's digest and signature, most recent last (check.go).
	verified []verifiedModule
	// dirErrs is the last error logged for each entry of the policy
	// directory, so that a broken entry is logged once (local.go).
	dirErrs map[string]string

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
	m := &Manager{cfg: cfg, rt: cfg.Runtime, store: cfg.Store, log: cfg.Logger,
		active: map[abi.Kind]*slot{}, local: map[int64]string{}, dirErrs: map[string]string{}, syncCh: make(chan struct{}, 1)}
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

// Close stops the loops, abandons the checks in progress, stops every
// shadow and closes the engine (each version after it drains). The
// runtime is the caller's.
func (m *Manager) Close() {
	if !m.closed.CompareAndSwap(false, true) {
		return
	}
	m.cancel()
	m.wg.Wait()
	for _, k := range allKinds {
		l := &m.lanes[k]
		l.switchMu.Lock()
		m.dec.stopShadow(k)
		l.switchMu.Unlock()
	}
	m.eng.Close()
}

var allKinds = []abi.Kind{abi.KindCache, abi.KindRoute, abi.KindCompress}

func (m *Manager) slot(kind abi.Kind) *slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[kind]
}

func (m *Manager) notify(ctx context.Context) {
	if m.cfg.Notifier == nil {
		return
	}
	if err := m.cfg.Notifier.Notify(ctx); err != nil {
		m.log.Warn("rollout: notify the fleet failed; instances converge at their next poll", "err", err)
	}
}
