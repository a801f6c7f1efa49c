package decision

import "time"

// CallBuckets are the upper bounds of the histogram of policy call
// durations, shared by the runtime's per-version statistics and the
// exported metrics: from a microsecond, where a decision of the default
// policies lies, to well past any deadline, so that an overrun shows by
// how much.
var CallBuckets = [...]time.Duration{
	time.Microsecond, 2 * time.Microsecond, 5 * time.Microsecond,
	10 * time.Microsecond, 20 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, time.Second,
}
