package rollout

import (
	"time"

	"github.com/wingman-app/wingate/host/policy"
)

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
	// ExecTier is how the version's calls run: "compiled", or
	// "interpreted" until a tiered start's compilation ends.
	ExecTier string `json:"exec_tier"`
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
			Instances: vs.Instances, Quarantined: quar[k.String()], ExecTier: vs.ExecTier.String(), Resources: ResourcesOf(vs)})
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
