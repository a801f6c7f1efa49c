package observe

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wingman-app/wingate/host/decision"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Per-policy resource metrics: the policy runtime reports every call
// into a guest and the guest output its quotas let through or dropped
// (policy.ResourceObserver, which this satisfies: see policy_resources_test.go), exported as
//
//	wingate_policy_call_duration_seconds{policy_kind, policy_name, policy_version, outcome}
//	wingate_policy_log_bytes_total{policy_name, policy_version, result="written"|"dropped"}
//	wingate_policy_memory_bytes{policy_name, policy_version}
//
// (the memory gauge is an instance's linear memory after its latest call
// that changed it; instances discarded, by reason, which includes the
// recycles, are wingate_policy_instances_total).
//
// The call histogram's buckets are DecisionDurationBuckets: they resolve
// microseconds, where a decision of the default policies lies, and go
// well past any deadline, so that an overrun shows by how much.

// policyResources holds the instruments, created on first use.
type policyResources struct {
	once    sync.Once
	callDur metric.Float64Histogram
	logOut  metric.Int64Counter
	memory  metric.Int64Gauge
	// calls holds each call series' attributes, so that recording a call
	// allocates nothing (a decision is on every cached hit's path).
	calls seriesMap[callKey, []metric.RecordOption]
}

type callKey struct {
	kind         abi.Kind
	pol, version string
	outcome      decision.Outcome
}

var resources sync.Map // *Metrics -> *policyResources

func (m *Metrics) policyResources() *policyResources {
	r, ok := resources.Load(m)
	if !ok {
		r, _ = resources.LoadOrStore(m, &policyResources{})
	}
	pr := r.(*policyResources)
	pr.once.Do(func() {
		var err error
		pr.callDur, err = m.meter.Float64Histogram("wingate.policy.call.duration",
			metric.WithUnit("s"), metric.WithDescription("Duration of each call into a policy guest as the runtime measured it, by kind, policy, version and outcome (ok, fallback, timeout, trap)."),
			metric.WithExplicitBucketBoundaries(DecisionDurationBuckets...))
		if err != nil {
			pr.callDur = nil
		}
		pr.logOut, err = m.meter.Int64Counter("wingate.policy.log.bytes",
			metric.WithUnit("By"), metric.WithDescription("Guest output (log calls, stdout, stderr) by policy, version and result: written to the log, or dropped by the output quotas."))
		if err != nil {
			pr.logOut = nil
		}
		pr.memory, err = m.meter.Int64Gauge("wingate.policy.memory",
			metric.WithUnit("By"), metric.WithDescription("Linear memory of a policy's instance after its latest call that changed it, by policy and version."))
		if err != nil {
			pr.memory = nil
		}
	})
	return pr
}

// PolicyCall records one call into a guest.
func (o policyObserver) PolicyCall(kind abi.Kind, pol, version string, d time.Duration, outcome decision.Outcome) {
	if o.m == nil {
		return
	}
	pr := o.m.policyResources()
	if pr.callDur == nil {
		return
	}
	k := callKey{kind, pol, version, outcome}
	opts, ok := pr.calls.get(k)
	if !ok {
		opts = pr.calls.getOrCreate(callKey{kind, strings.Clone(pol), strings.Clone(version), outcome},
			func() callKey { return callKey{kind, otherLabel, otherLabel, outcome} },
			func(k callKey) []metric.RecordOption {
				return recordOpt(attribute.String("policy.kind", k.kind.String()), attribute.String("policy.name", k.pol),
					attribute.String("policy.version", k.version), attribute.String("outcome", k.outcome.String()))
			})
	}
	pr.callDur.Record(context.Background(), d.Seconds(), opts...)
}

// GuestOutput counts guest output written and dropped.
func (o policyObserver) GuestOutput(pol, version string, written, dropped int) {
	if o.m == nil {
		return
	}
	c := o.m.policyResources().logOut
	if c == nil {
		return
	}
	if written > 0 {
		c.Add(context.Background(), int64(written), metric.WithAttributes(
			attribute.String("policy.name", pol), attribute.String("policy.version", version), attribute.String("result", "written")))
	}
	if dropped > 0 {
		c.Add(context.Background(), int64(dropped), metric.WithAttributes(
			attribute.String("policy.name", pol), attribute.String("policy.version", version), attribute.String("result", "dropped")))
	}
}

// PolicyMemory records an instance's memory after a call that changed it.
func (o policyObserver) PolicyMemory(pol, version string, bytes int64) {
	if o.m == nil {
		return
	}
	if g := o.m.policyResources().memory; g != nil {
		g.Record(context.Background(), bytes, metric.WithAttributes(
			attribute.String("policy.name", pol), attribute.String("policy.version", version)))
	}
}
