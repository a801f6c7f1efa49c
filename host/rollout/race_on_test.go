//go:build race

package rollout_test

// raceEnabled: the race detector slows compilation and guests' host calls
// several times; the tests scale their load down and reuse one module.
const raceEnabled = true
