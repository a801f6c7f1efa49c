package policy

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// idlePool holds a version's idle instances, most recently used on top.
// Handing out the instance used last keeps the few that a machine's cores
// can run at once hot in the CPU caches; a first-in, first-out queue
// rotates through all of them, and a Go guest touches enough code and
// memory per call that a cold instance made decisions measurably slower
// under load. The bottom of the stack is what shrinking closes. Callers
// that find it empty wait in arrival order.
type idlePool struct {
	mu      sync.Mutex
	stack   []*instance
	waiters []chan *instance
}

// get pops the most recently used idle instance, or nil.
func (p *idlePool) get() *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.popLocked()
}

// popLocked pops the top of the stack, or nil; p.mu is held.
func (p *idlePool) popLocked() *instance {
	n := len(p.stack)
	if n == 0 {
		return nil
	}
	in := p.stack[n-1]
	p.stack[n-1] = nil
	p.stack = p.stack[:n-1]
	return in
}

// oldest removes the least recently used idle instance, or nil.
func (p *idlePool) oldest() *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.stack) == 0 {
		return nil
	}
	in := p.stack[0]
	p.stack = slices.Delete(p.stack, 0, 1)
	return in
}

// put hands in to the longest waiting caller, or pushes it on top.
func (p *idlePool) put(in *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.putLocked(in)
}

// putUnless puts in unless stale says it must not serve any more, and
// reports whether it did. stale is asked under the pool's lock, which
// swap holds too: an instance is either put before a swap, which then
// takes it out, or judged after it.
func (p *idlePool) putUnless(in *instance, stale func(*instance) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if stale(in) {
		return false
	}
	p.putLocked(in)
	return true
}

// putLocked is put with p.mu held.
func (p *idlePool) putLocked(in *instance) {
	if len(p.waiters) > 0 {
		ch := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		ch <- in // buffered, and only this send ever reaches it
		return
	}
	p.stack = append(p.stack, in)
}

// wait returns an idle instance, waiting for one up to timeout or the
// end of ctx; the error is ctx's or errPoolTimeout.
func (p *idlePool) wait(ctx context.Context, timeout time.Duration) (*instance, error) {
	p.mu.Lock()
	if in := p.popLocked(); in != nil {
		p.mu.Unlock()
		return in, nil
	}
	ch := make(chan *instance, 1)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case in := <-ch:
		return in, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = errPoolTimeout
	}
	p.mu.Lock()
	i := slices.Index(p.waiters, ch)
	if i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
	}
	p.mu.Unlock()
	if i < 0 {
		// Handed an instance while giving up: use it rather than lose it.
		return <-ch, nil
	}
	return nil, err
}

// swap puts fresh in the pool in place of the idle instances stale
// selects, in one step: a caller takes either an instance of fresh or
// one stale does not select, never one it does. Waiting callers are
// handed instances of fresh first, longest waiting first. It returns
// the instances it took out.
func (p *idlePool) swap(fresh []*instance, stale func(*instance) bool) []*instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*instance
	keep := p.stack[:0]
	for _, in := range p.stack {
		if stale(in) {
			out = append(out, in)
		} else {
			keep = append(keep, in)
		}
	}
	clear(p.stack[len(keep):])
	p.stack = keep
	for _, in := range fresh {
		if len(p.waiters) > 0 {
			ch := p.waiters[0]
			p.waiters = slices.Delete(p.waiters, 0, 1)
			ch <- in
			continue
		}
		p.stack = append(p.stack, in)
	}
	return out
}

// drain removes and returns every idle instance.
func (p *idlePool) drain() []*instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.stack
	p.stack = nil
	return out
}

// len is the number of idle instances.
func (p *idlePool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.stack)
}

// errPoolTimeout: no instance became free within the acquire timeout.
var errPoolTimeout = errors.New("policy: no idle instance within the acquire timeout")
