package rollout

import "time"

// ActiveStatus is the version this instance serves for one kind.
type ActiveStatus struct {
	Kind        string `json:"kind"`
	ID          int64  `json:"id"`
	Policy      string `json:"policy"`
	Version     string `json:"version"`
	Source      string `json:"source,omitempty"`
	Calls       int64  `json:"calls"`
	Failures    int64  `json:"failures"`
	Timeouts    int64  `json:"timeouts"`
	Traps       int64  `json:"traps"`
	Instances   int    `json:"instances"`
	Quarantined bool   `json:"quarantined"`
}

// PendingStatus is an activation, rollback or sync of one kind being
// checked on this instance: the version, the step it is at and since when.
type PendingStatus struct {
	Kind  string    `json:"kind"`
	Op    string    `json:"op"`
	ID    int64     `json:"id"`
	Step  string    `json:"step"`
	Since time.Time `json:"since"`
}

// InstanceStatus is what one instance serves.
type InstanceStatus struct {
	Instance string         `json:"instance"`
	Active   []ActiveStatus `json:"active"`
	Shadows  []ShadowStats  `json:"shadows"`
	// Pending lists the newest operation of each kind still being
	// checked.
	Pending []PendingStatus `json:"pending,omitempty"`
	// Rejected lists this instance's pipeline failures: id → reason.
	Rejected map[int64]string `json:"rejected,omitempty"`
	// LiveInstances counts the runtime's live guest instances, all
	// versions together (old versions' instances leave it once closed).
	LiveInstances int `json:"live_instances"`
}

// Status reports what this instance serves.
func (m *Manager) Status() InstanceStatus {
	st := InstanceStatus{Instance: m.cfg.Instance, Active: []ActiveStatus{}, Shadows: []ShadowStats{}, LiveInstances: m.rt.Instances()}
	quar := map[string]bool{}
	for _, a := range m.eng.List() {
		quar[a.Kind.String()] = a.Quarantined
	}
	m.mu.Lock()
	for _, k := range allKinds {
		if o := m.lanes[k].cur; o != nil {
			p := PendingStatus{Kind: k.String(), Op: o.what, ID: o.id, Since: o.since.UTC()}
			if s := o.step.Load(); s != nil {
				p.Step = *s
			}
			st.Pending = append(st.Pending, p)
		}
		s := m.active[k]
		if s == nil || m.eng.Active(k) != s.v {
			continue
		}
		vs := s.v.Stats()
		st.Active = append(st.Active, ActiveStatus{Kind: k.String(), ID: s.rec.ID, Policy: s.rec.Name, Version: s.v.Digest(),
			Source: s.rec.Source, Calls: vs.Calls, Failures: vs.Failures, Timeouts: vs.Timeouts, Traps: vs.Traps,
			Instances: vs.Instances, Quarantined: quar[k.String()]})
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
