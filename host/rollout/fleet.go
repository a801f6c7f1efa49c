package rollout

import (
	"context"
	"errors"
	"sync"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Sync converges this instance on the store: for each kind, the store's
// active version is checked (through the pipeline) and switched to when
// it is not the one served here, and the store's shadow candidates are
// started or stopped. The kinds converge concurrently, so that a slow
// candidate of one kind holds up no other. A version that fails here is
// reported and the current one keeps serving.
func (m *Manager) Sync(ctx context.Context) error {
	recs, err := m.store.List(ctx)
	if err != nil {
		return storeFailed("list versions", err)
	}
	errs := make([]error, len(allKinds))
	var wg sync.WaitGroup
	for i, kind := range allKinds {
		wg.Go(func() {
			errs[i] = errors.Join(m.syncActive(ctx, kind, recs), m.syncShadow(ctx, kind, recs))
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// syncActive switches kind to the store's active version.
func (m *Manager) syncActive(ctx context.Context, kind abi.Kind, recs []Record) error {
	r, ok := activeOf(recs, kind.String())
	if !ok {
		return nil
	}
	cur := m.slot(kind)
	m.mu.Lock()
	_, failedHere := m.local[r.ID]
	m.mu.Unlock()
	if (cur != nil && cur.rec.ID == r.ID) || failedHere {
		return nil
	}
	o, err := m.begin(ctx, kind, "sync", r.ID)
	if err != nil {
		return err
	}
	defer m.end(o)
	v, err := m.runCheck(o, r)
	switch {
	case errors.Is(err, ErrSuperseded):
		return nil // a newer operation took over; the next sync looks again
	case err != nil:
		if failed(err) {
			m.reject(ctx, r, err)
		}
		return err
	}
	err = m.commit(o, func() error {
		if cur := m.slot(kind); cur != nil && cur.rec.ID == r.ID {
			v.Close()
			return nil
		}
		m.switchTo(kind, r, v, true)
		return nil
	})
	if err != nil {
		v.Close()
		if errors.Is(err, ErrSuperseded) {
			return nil
		}
	}
	return err
}

// syncShadow starts or stops kind's shadow candidate after the store.
func (m *Manager) syncShadow(ctx context.Context, kind abi.Kind, recs []Record) error {
	var shadow *Record
	for i := range recs {
		if recs[i].Kind == kind.String() && recs[i].Status == StatusShadow {
			shadow = &recs[i]
			break
		}
	}
	cur := m.dec.shadowID(kind)
	switch {
	case shadow == nil && cur != 0:
		l := &m.lanes[kind]
		l.switchMu.Lock()
		m.dec.stopShadow(kind)
		l.switchMu.Unlock()
	case shadow != nil && cur != shadow.ID:
		o, err := m.begin(ctx, kind, "shadow", shadow.ID)
		if err != nil {
			return err
		}
		defer m.end(o)
		v, err := m.runCheck(o, *shadow)
		if err != nil {
			if failed(err) {
				m.reject(ctx, *shadow, err)
			}
			return err
		}
		if err := m.commit(o, func() error {
			m.dec.startShadow(kind, *shadow, v, m.cfg.ShadowSample)
			return nil
		}); err != nil {
			v.Close()
			return err
		}
	}
	return nil
}
