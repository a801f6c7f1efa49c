//go:build !race

package server

// raceEnabled is true when the race detector is on: load tests then run a
// smaller workload.
const raceEnabled = false
