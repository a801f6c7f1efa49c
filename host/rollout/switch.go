package rollout

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// lane orders the operations on one kind. Checks run concurrently and
// outside it; switchMu is held only for the final switch (the store's
// record and the engine's swap), and only the newest operation (gen) may
// switch.
type lane struct {
	switchMu sync.Mutex
	gen      uint64 // guarded by Manager.mu
	cur      *op    // the newest operation while in progress; Manager.mu
}

// op is one activation, rollback or sync of a kind.
type op struct {
	kind   abi.Kind
	gen    uint64
	what   string // "activate", "rollback", "sync", "shadow"
	id     int64  // guarded by Manager.mu once o is published
	since  time.Time
	step   atomic.Pointer[string]
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   func() bool
}

func (o *op) setStep(s string) {
	if o != nil {
		o.step.Store(&s)
	}
}

// begin starts an operation on kind, superseding (cancelling) the one in
// progress. Shadow operations (what "shadow") neither supersede nor are
// superseded. Call end when done.
func (m *Manager) begin(ctx context.Context, kind abi.Kind, what string, id int64) (*op, error) {
	octx, cancel := context.WithCancelCause(ctx)
	o := &op{kind: kind, what: what, id: id, since: time.Now(), ctx: octx, cancel: cancel}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		cancel(ErrClosed)
		return nil, ErrClosed
	}
	m.wg.Add(1)
	o.stop = context.AfterFunc(m.ctx, func() { cancel(ErrClosed) })
	if what != "shadow" {
		l := &m.lanes[kind]
		l.gen++
		o.gen = l.gen
		if l.cur != nil {
			l.cur.cancel(ErrSuperseded)
		}
		l.cur = o
	}
	return o, nil
}

func (m *Manager) end(o *op) {
	m.mu.Lock()
	if l := &m.lanes[o.kind]; l.cur == o {
		l.cur = nil
	}
	m.mu.Unlock()
	o.stop()
	o.cancel(nil)
	m.wg.Done()
}

// commit runs fn, the switch, under the kind's switch lock, unless a
// newer operation superseded o or the manager closed.
func (m *Manager) commit(o *op, fn func() error) error {
	l := &m.lanes[o.kind]
	l.switchMu.Lock()
	defer l.switchMu.Unlock()
	m.mu.Lock()
	stale := o.what != "shadow" && l.gen != o.gen
	m.mu.Unlock()
	switch {
	case stale:
		return ErrSuperseded
	case m.closed.Load():
		return ErrClosed
	}
	return fn()
}

// checkOrReject runs the check of rec under o; a version that fails it is
// recorded as rejected, and rec is returned as the store then holds it.
func (m *Manager) checkOrReject(ctx context.Context, o *op, rec Record) (*policy.Version, Record, error) {
	v, err := m.runCheck(o, rec)
	if err != nil && failed(err) {
		m.reject(ctx, rec, err)
		if r, gerr := m.store.Get(ctx, rec.ID); gerr == nil {
			rec = r
		}
	}
	return v, rec, err
}

// runCheck checks rec for o (check) in its own goroutine and waits for
// it, or for o's end: superseded, the manager closed or the caller gone.
// Then o's caller returns at once; the check goes on until its next step
// or case and its version, if any, is closed.
func (m *Manager) runCheck(o *op, rec Record) (*policy.Version, error) {
	type result struct {
		v   *policy.Version
		err error
	}
	done := make(chan result, 1)
	var (
		mu        sync.Mutex
		abandoned bool
	)
	m.wg.Add(1) // o holds the group above zero
	go func() {
		defer m.wg.Done()
		v, err := m.check(o.ctx, rec, o)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if v != nil {
				v.Close()
			}
			return
		}
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-o.ctx.Done():
		mu.Lock()
		abandoned = true
		mu.Unlock()
		select {
		case r := <-done: // finished meanwhile
			if r.v != nil {
				r.v.Close()
			}
		default:
		}
		return nil, cause(o.ctx)
	}
}

// cause is why ctx ended: ErrSuperseded, ErrClosed or the caller's own
// context error.
func cause(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return ctx.Err()
}

// Activate runs the whole pipeline on version id and, if every step
// passes, makes it the active version of its kind on this instance and in
// the store (which tells the fleet). On failure the active version keeps
// serving and the error (a *StepError) says why; the store records it.
// A newer activation or rollback of the same kind started meanwhile
// supersedes this one (ErrSuperseded; nothing changed).
func (m *Manager) Activate(ctx context.Context, id int64) (Record, error) {
	rec, err := m.store.Get(ctx, id)
	if err != nil {
		return Record{}, storeFailed("read the version", err)
	}
	kind, ok := abi.ParseKind(rec.Kind)
	if !ok {
		return rec, &StepError{StepValidate, fmt.Errorf("unknown kind %q", rec.Kind)}
	}
	if cur := m.slot(kind); cur != nil && cur.rec.ID == id && rec.Status == StatusActive {
		return rec, nil
	}
	o, err := m.begin(ctx, kind, "activate", id)
	if err != nil {
		return rec, err
	}
	defer m.end(o)
	v, rec, err := m.checkOrReject(ctx, o, rec)
	if err != nil {
		if failed(err) && rec.Reason == "" {
			rec.Reason = err.Error()
		}
		return rec, err
	}
	err = m.commit(o, func() error {
		if err := m.store.Activate(ctx, id, "", ""); err != nil {
			return &StepError{StepSwitch, storeFailed("record the activation", err)}
		}
		if r, err := m.store.Get(ctx, id); err == nil {
			rec = r
		}
		if m.dec.shadowID(kind) == id {
			m.dec.stopShadow(kind)
		}
		m.switchTo(kind, rec, v, true)
		return nil
	})
	if err != nil {
		v.Close()
		return rec, err
	}
	m.notify(ctx)
	return rec, nil
}

// Rollback makes the last good version of kind before the current one
// active again, through the pipeline: the most recently activated
// previous version. The version it replaces becomes inactive (reason
// "rolled back"), not previous, so a second rollback goes further back
// instead of returning to it; `policy activate` can still bring it back.
// It supersedes an activation of kind in progress.
func (m *Manager) Rollback(ctx context.Context, kind abi.Kind) (Record, error) {
	return m.RollbackTo(ctx, kind, 0)
}

// RollbackTo is Rollback to version to (any version of kind that was
// active once and is now previous or inactive; 0: the last good one).
// Rejected and quarantined versions are never targets.
func (m *Manager) RollbackTo(ctx context.Context, kind abi.Kind, to int64) (Record, error) {
	o, err := m.begin(ctx, kind, "rollback", 0)
	if err != nil {
		return Record{}, err
	}
	defer m.end(o)
	return m.rollback(ctx, o, StatusInactive, ReasonRolledBack, 0, to)
}

// ReasonRolledBack is the reason a version replaced by a manual
// rollback carries.
const ReasonRolledBack = "rolled back"

// rollback rolls kind back for o, to version to or (0) the last good
// one; the version replaced gets oldStatus and reason. When from is not
// zero, only if version from is still the one serving (an automatic
// rollback).
func (m *Manager) rollback(ctx context.Context, o *op, oldStatus Status, reason string, from, to int64) (Record, error) {
	kind := o.kind
	recs, err := m.store.List(ctx)
	if err != nil {
		return Record{}, storeFailed("list versions", err)
	}
	target, ok := rollbackTarget(recs, kind.String(), to)
	if !ok {
		if to != 0 {
			return Record{}, fmt.Errorf("%w (kind %s): version %d is not a version of the kind that was active and is now previous or inactive", ErrNoRollbackTarget, kind, to)
		}
		return Record{}, fmt.Errorf("%w (kind %s)", ErrNoRollbackTarget, kind)
	}
	m.mu.Lock() // Status reads o.id under m.mu
	o.id = target.ID
	m.mu.Unlock()
	v, err := m.runCheck(o, target)
	if err != nil {
		if failed(err) {
			m.reject(ctx, target, err)
		}
		return target, err
	}
	err = m.commit(o, func() error {
		if cur := m.slot(kind); from != 0 && (cur == nil || cur.rec.ID != from) {
			return ErrSuperseded
		}
		if err := m.store.Activate(ctx, target.ID, oldStatus, reason); err != nil {
			return &StepError{StepSwitch, storeFailed("record the activation", err)}
		}
		if r, err := m.store.Get(ctx, target.ID); err == nil {
			target = r
		}
		m.switchTo(kind, target, v, false)
		return nil
	})
	if err != nil {
		v.Close()
		return target, err
	}
	m.notify(ctx)
	return target, nil
}

// watchWhenCompiled starts the rollback watch of v, a version a tiered
// start serves interpreted, once it runs compiled: its fallback rate is
// judged on the decisions it will go on making, not on the interpreter's
// (slower, and a deadline sized for compiled code may not fit them).
// Called under the kind's switch lock, within an operation (m.wg is
// above zero).
func (m *Manager) watchWhenCompiled(kind abi.Kind, id int64, v *policy.Version) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-v.Compiled():
		case <-v.Done():
			return
		case <-m.ctx.Done():
			return
		}
		l := &m.lanes[kind]
		l.switchMu.Lock()
		defer l.switchMu.Unlock()
		if cur := m.slot(kind); cur != nil && cur.v == v {
			m.fresh[kind].Store(&freshWatch{id: id, version: v.Digest(), start: time.Now()})
		}
	}()
}

// switchTo makes v active for kind: the engine's atomic swap, then the old
// version drains and is closed. watch starts the rollback watch. Called
// under the kind's switch lock.
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
		v.Close()
		return
	}
	if watch && m.cfg.RollbackThreshold > 0 {
		select {
		case <-v.Compiled():
			m.fresh[kind].Store(&freshWatch{id: rec.ID, version: v.Digest(), start: time.Now()})
		default:
			m.watchWhenCompiled(kind, rec.ID, v)
		}
	}
	m.mu.Lock()
	m.active[kind] = &slot{rec: rec, v: v}
	delete(m.local, rec.ID)
	m.mu.Unlock()
	from := ""
	if old != nil {
		from = old.Digest()
	}
	m.log.Info("rollout: version active", "kind", kind, "id", rec.ID, "policy", rec.Name, "version", v.Digest(), "replaced", from)
}
