package pgstore

import "testing"

// TestHealthIgnoresStartUp: the connections dialled while the store
// starts (the migration's first acquire waits for a dial) are not
// pressure: right after Migrate the recent acquire wait is zero and the
// health score 100, although the pool did wait. (They used to count in
// the first window and score a fresh server under 80, which put the
// DatabasePoolSaturated alert pending.)
func TestHealthIgnoresStartUp(t *testing.T) {
	s := openTestStore(t, Config{})
	ps := s.PoolStats()
	if ps.AcquireWait <= 0 || ps.AcquireCount == 0 {
		t.Fatalf("the start-up acquires did not wait (%+v): the test proves nothing", ps)
	}
	if ps.RecentAcquireWait != 0 || ps.Health != 100 {
		t.Fatalf("fresh store: recent acquire wait %v, health %d; want 0 and 100 (%+v)", ps.RecentAcquireWait, ps.Health, ps)
	}
}
