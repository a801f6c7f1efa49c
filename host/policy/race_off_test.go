//go:build !race

package policy

// raceEnabled is true when the race detector is on: timing bounds are
// then loosened, since the detector slows everything many times over.
const raceEnabled = false
