package observe

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wingman-app/wingate/host/observe/event"
)

type poolSource struct {
	s event.Pool
}

// WatchPool exports p's connection pool: connection counts by state, the
// maximum, utilization, the health score, acquires and acquire wait. The
// stats are read at each scrape and each dashboard or alert evaluation.
func (m *Metrics) WatchPool(p event.Pool) {
	if m == nil || p == nil {
		return
	}
	m.pool.Store(&poolSource{s: p})
}

// Pool returns the watched pool's stats; ok is false when no pool is
// watched (the in-memory store).
func (m *Metrics) Pool() (st event.PoolStats, ok bool) {
	ps := m.pool.Load()
	if ps == nil {
		return st, false
	}
	return ps.s.PoolStats(), true
}

func (m *Metrics) poolInstruments() error {
	mt := m.meter
	// Named db.client.connections.usage (the semantic conventions' name
	// before 1.26) rather than db.client.connection.count: Prometheus
	// reserves the suffix _count for histograms and summaries.
	count, err1 := mt.Int64ObservableGauge("db.client.connections.usage",
		metric.WithUnit("{connection}"), metric.WithDescription("Connections of the database pool by state (used, idle)."))
	maxc, err2 := mt.Int64ObservableGauge("db.client.connection.max",
		metric.WithUnit("{connection}"), metric.WithDescription("The database pool's maximum number of connections."))
	util, err3 := mt.Float64ObservableGauge("wingate.db.pool.utilization",
		metric.WithUnit("1"), metric.WithDescription("Connections in use over the maximum, 0-1."))
	health, err4 := mt.Int64ObservableGauge("wingate.db.pool.health",
		metric.WithUnit("{score}"), metric.WithDescription("Health score of the database pool, 0-100 (100 is healthy)."))
	acq, err5 := mt.Int64ObservableCounter("wingate.db.pool.acquires",
		metric.WithUnit("{acquire}"), metric.WithDescription("Successful connection acquires."))
	wait, err6 := mt.Float64ObservableCounter("wingate.db.pool.acquire.wait",
		metric.WithUnit("s"), metric.WithDescription("Time spent waiting for a connection when none was idle."))
	reach, err7 := mt.Int64ObservableGauge("wingate.db.pool.reachable",
		metric.WithDescription("1 while the database can be reached."))
	for _, err := range []error{err1, err2, err3, err4, err5, err6, err7} {
		if err != nil {
			return err
		}
	}
	used := metric.WithAttributeSet(attribute.NewSet(attribute.String("db.client.connection.state", "used")))
	idle := metric.WithAttributeSet(attribute.NewSet(attribute.String("db.client.connection.state", "idle")))
	_, err := mt.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st, ok := m.Pool()
		if !ok {
			return nil
		}
		o.ObserveInt64(count, int64(st.Acquired), used)
		o.ObserveInt64(count, int64(st.Idle), idle)
		o.ObserveInt64(maxc, int64(st.Max))
		o.ObserveFloat64(util, st.Utilisation)
		o.ObserveInt64(health, int64(st.Health))
		o.ObserveInt64(acq, st.AcquireCount)
		o.ObserveFloat64(wait, st.AcquireWait.Seconds())
		r := int64(0)
		if st.Reachable {
			r = 1
		}
		o.ObserveInt64(reach, r)
		return nil
	}, count, maxc, util, health, acq, wait, reach)
	return err
}

// WatchLLMConnections installs the source of the model providers'
// connection counts: each provider with a connection pool, and the TCP
// connections it has opened. They are read at each scrape.
func (m *Metrics) WatchLLMConnections(f func() map[string]int64) {
	if m == nil || f == nil {
		return
	}
	m.llmConns.Store(&f)
}

func (m *Metrics) observeLLMConns(_ context.Context, o metric.Int64Observer) error {
	f := m.llmConns.Load()
	if f == nil {
		return nil
	}
	for provider, n := range (*f)() {
		o.Observe(n, metric.WithAttributeSet(attribute.NewSet(attribute.String("llm.provider", provider))))
	}
	return nil
}

// ActivePolicy is the policy version serving one kind (event.ActivePolicy).
type ActivePolicy = event.ActivePolicy

// SetActivePolicies installs the source of the active policy versions
// (the policy engine's ActivePolicies). Without one, the dashboard shows the policy and
// version of each kind's latest decision.
func (m *Metrics) SetActivePolicies(f func() []ActivePolicy) {
	if m == nil {
		return
	}
	m.activeMu.Lock()
	m.activeFn = f
	m.activeMu.Unlock()
}

// observeActivePolicies reports the active versions of the source
// SetActivePolicies installed (none without one): one series per kind,
// with the tier its calls run on.
func (m *Metrics) observeActivePolicies(_ context.Context, o metric.Int64Observer) error {
	m.activeMu.Lock()
	f := m.activeFn
	m.activeMu.Unlock()
	if f == nil {
		return nil
	}
	for _, a := range f() {
		tier := a.ExecTier
		if tier == "" {
			tier = "compiled"
		}
		o.Observe(1, metric.WithAttributeSet(attribute.NewSet(attribute.String("policy.kind", a.Kind), attribute.String("policy.name", a.Policy),
			attribute.String("policy.version", a.Version), attribute.String("exec_tier", tier))))
	}
	return nil
}

func (m *Metrics) activePolicies() []ActivePolicy {
	m.activeMu.Lock()
	f := m.activeFn
	m.activeMu.Unlock()
	if f != nil {
		return f()
	}
	var out []ActivePolicy
	m.policyKinds.each(func(kind string, k *policyKind) {
		p, v, at := k.latest()
		out = append(out, ActivePolicy{Kind: kind, Policy: p, Version: v, Since: at})
	})
	return out
}
