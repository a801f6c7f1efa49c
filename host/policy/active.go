package policy

import "github.com/wingman-app/wingate/host/observe/event"

// ActivePolicies returns the active version of every kind in the observability
// layer's terms; the assembly registers it with the metrics
// (observe.Metrics.SetActivePolicies).
func (e *Engine) ActivePolicies() []event.ActivePolicy {
	var out []event.ActivePolicy
	for _, a := range e.List() {
		out = append(out, event.ActivePolicy{Kind: a.Kind.String(), Policy: a.Stats.Policy,
			Version: a.Stats.Version, Quarantined: a.Quarantined, ExecTier: a.Stats.ExecTier.String()})
	}
	return out
}
