package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

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
	if cur := m.slot(kind); cur == nil || cur.rec.ID != w.id {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	o, err := m.begin(ctx, kind, "rollback", 0)
	if err != nil {
		return
	}
	defer m.end(o)
	m.log.Warn("rollout: rolling back", "kind", kind, "id", w.id, "version", w.version, "reason", reason)
	_, err = m.rollback(ctx, o, StatusQuarantined, reason, w.id, 0)
	if err == nil || errors.Is(err, ErrSuperseded) || errors.Is(err, ErrClosed) {
		return
	}
	if !errors.Is(err, ErrNoRollbackTarget) {
		m.log.Error("rollout: automatic rollback failed", "kind", kind, "err", err)
	}
	_ = m.commit(o, func() error {
		if cur := m.slot(kind); cur == nil || cur.rec.ID != w.id {
			return nil
		}
		if old := m.eng.Deactivate(kind); old != nil {
			old.Close()
		}
		m.mu.Lock()
		delete(m.active, kind)
		m.mu.Unlock()
		_ = m.store.SetStatus(ctx, w.id, StatusQuarantined, reason)
		return nil
	})
	m.notify(ctx)
}
