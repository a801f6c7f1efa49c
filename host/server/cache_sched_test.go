package server

import (
	"sync/atomic"
	"time"
)

// schedProbe measures how late the Go scheduler runs a goroutine: a loop
// of 1 ms sleeps records the worst oversleep. On a machine shared with
// other work, a wait that looks long may be starvation, not Redis; tests
// that bound latencies add this to their bounds.
type schedProbe struct {
	worst atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func startSchedProbe() *schedProbe {
	p := &schedProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			if late := int64(time.Since(t0) - time.Millisecond); late > p.worst.Load() {
				p.worst.Store(late)
			}
		}
	}()
	return p
}

// Stop ends the probe and returns the worst oversleep seen.
func (p *schedProbe) Stop() time.Duration {
	close(p.stop)
	<-p.done
	return time.Duration(p.worst.Load())
}
