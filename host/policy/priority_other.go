//go:build !linux

package policy

// lowerThreadPriority does nothing where the priority of one thread
// cannot be set: the background compilation competes as an ordinary
// thread, bounded by Options.TierWorkers.
func lowerThreadPriority() {}
