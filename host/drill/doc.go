// Package drill holds the fault drills of a whole Wingate process: the
// application built by package app exactly as `wingate serve` builds it, in
// process on a loopback port, under load from package loadgen while
// something breaks.
//
//   - Redis: the server's Redis (a private redis-server on a free port) is
//     stopped and restarted under load.
//   - PostgreSQL: the pool's backends are killed with pg_terminate_backend,
//     then the database "stops" (a TCP proxy in front of it refuses
//     connections) and returns.
//   - Policy swaps: the cache policy is switched between two versions through
//     the admin API every second.
//   - Hostile policy: cache policies that trap or return errors are pushed
//     through the admin API; they are rejected by the self-test, or
//     activated and rolled back, while fallback decisions are served. With
//     -drill, policies that loop forever too, in a child process killed
//     after a bound (TestDrillRunawayPolicy): a process that cannot stop a
//     runaway guest freezes whole.
//   - Provider failures: an OpenAI-compatible server fails one tier's model,
//     then every model, then recovers.
//   - Sandbox (TestDrillSandbox): every hostile module of
//     host/internal/guests is pushed through the admin API and dropped
//     into the watched policy directory of `wingate serve` built by `go
//     build ./cmd/wingate` and run as its own process; each is refused, or
//     quarantined and rolled back, while requests, the host's longest
//     policy call, /healthz, RSS and the log stay within bounds (see
//     sandbox_test.go; the figures of the promise only with -drill).
//
// Every drill checks that no acknowledged write is lost (each 2xx location
// PUT, challenge completion and chat message is found in the database
// afterwards) and that no request gets a 5xx where a fallback exists; a 503
// JSON answer is allowed, and counted, only where none does (the database
// down, every model down).
//
// The drills are tests: `go test ./host/drill` runs each for a few seconds
// (the smoke version the CI suite runs); `go test ./host/drill -drill -v`
// (`task drill`) runs each for longer at a higher rate and prints its
// figures. They need PostgreSQL on 127.0.0.1:5432, redis-server on the PATH
// and the built policies (`go generate ./policies`). Each drill creates its
// own database and drops it at the end; the only Redis it uses is its own.
package drill
