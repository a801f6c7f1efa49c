package pgstore

import (
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wingman-app/wingate/host/store"
)

// healthState tracks whether the database is reachable, from the outcome
// of operations, and logs one line per change.
type healthState struct {
	reachable atomic.Bool

	mu       sync.Mutex
	prevAt   time.Time
	prevCnt  int64
	prevWait time.Duration
	prevCanc int64
	recent   time.Duration // mean acquire wait over the last window
	canc     int64         // canceled acquires in the last window
}

func (h *healthState) ok(log *slog.Logger) {
	if !h.reachable.Load() && h.reachable.CompareAndSwap(false, true) {
		log.Info("database reachable again")
	}
}

func (h *healthState) fail(log *slog.Logger, err error) {
	if h.reachable.Load() && h.reachable.CompareAndSwap(true, false) {
		log.Warn("database unreachable", "err", err)
	}
}

// statsWindow is the length of the window behind the "recent" figures.
const statsWindow = 5 * time.Second

// PoolStats returns a snapshot of the pool with its health score.
//
// # Health score
//
// Health starts at 100 and loses points for:
//   - utilisation (acquired/max) above 0.75: up to 40 points, linearly,
//     at 1.0 (a saturated pool makes callers queue);
//   - recent mean acquire wait: 1 point per 0.5 ms, at most 40 (a
//     20 ms mean wait already costs the whole budget of a fast query);
//   - acquires canceled in the recent window (timeouts, callers gone):
//     5 points each, at most 20.
//
// An unreachable database scores 0. "Recent" is the window of about 5 s
// before the last call; the first window starts when Migrate completes,
// so the connections dialled while the store starts (the migration's
// first acquire waits for one) are not taken for pressure.
// Rough reading: ≥ 80 healthy, 50-80 under pressure, < 50 degraded.
func (s *Store) PoolStats() store.PoolStats {
	st := s.pool.Stat()
	ps := store.PoolStats{
		Acquired:         st.AcquiredConns(),
		Idle:             st.IdleConns(),
		Total:            st.TotalConns(),
		Max:              st.MaxConns(),
		AcquireCount:     st.AcquireCount(),
		AcquireWait:      st.EmptyAcquireWaitTime(),
		CanceledAcquires: st.CanceledAcquireCount(),
		Reachable:        s.health.reachable.Load(),
	}
	if ps.Max > 0 {
		ps.Utilisation = float64(ps.Acquired) / float64(ps.Max)
	}
	h := &s.health
	h.mu.Lock()
	now := time.Now()
	if h.prevAt.IsZero() || now.Sub(h.prevAt) >= statsWindow {
		if dc := ps.AcquireCount - h.prevCnt; dc > 0 {
			h.recent = (ps.AcquireWait - h.prevWait) / time.Duration(dc)
		} else {
			h.recent = 0
		}
		h.canc = ps.CanceledAcquires - h.prevCanc
		h.prevAt, h.prevCnt, h.prevWait, h.prevCanc = now, ps.AcquireCount, ps.AcquireWait, ps.CanceledAcquires
	}
	ps.RecentAcquireWait = h.recent
	canc := h.canc
	h.mu.Unlock()
	ps.Health = HealthScore(ps.Utilisation, ps.RecentAcquireWait, canc, ps.Reachable)
	return ps
}

// startHealthWindow starts the first "recent" window of PoolStats now:
// what the pool waited for before (the start-up's dials) is left out.
func (s *Store) startHealthWindow() {
	st := s.pool.Stat()
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	h.prevAt, h.prevCnt, h.prevWait, h.prevCanc = time.Now(), st.AcquireCount(), st.EmptyAcquireWaitTime(), st.CanceledAcquireCount()
	h.recent, h.canc = 0, 0
}

// HealthScore is the formula documented on PoolStats.
func HealthScore(utilisation float64, recentWait time.Duration, canceled int64, reachable bool) int {
	if !reachable {
		return 0
	}
	score := 100.0
	if utilisation > 0.75 {
		score -= math.Min(40, (utilisation-0.75)/0.25*40)
	}
	score -= math.Min(40, float64(recentWait)/float64(500*time.Microsecond))
	score -= math.Min(20, 5*float64(canceled))
	return int(math.Max(0, math.Round(score)))
}
