package policy

import (
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Observer receives the runtime's events for metrics. Implementations
// must be safe for concurrent use and fast: Decision is called once per
// decision on the request path. A nil Observer is a no-op.
type Observer interface {
	// Decision reports one decision of the Engine (policy and version are
	// empty when no version is active).
	Decision(kind abi.Kind, policy, version string, outcome Outcome, d time.Duration)
	// InstanceCreated reports a new warm instance of a version.
	InstanceCreated(policy, version string)
	// InstanceDiscarded reports an instance thrown away; reason is one of
	// "trap", "timeout", "recycle", "memory", "idle", "close", "tier"
	// (an interpreted instance replaced by compiled ones).
	InstanceDiscarded(policy, version, reason string)
	// Quarantined reports a version put in quarantine for kind after
	// failing too many calls in a row.
	Quarantined(kind abi.Kind, policy, version string)
}
