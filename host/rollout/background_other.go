//go:build !linux

package rollout

// inBackground runs fn; only Linux lowers the thread's priority.
func inBackground(fn func()) { fn() }
