package cache

import (
	"context"
	"fmt"
	"sync"
)

// flight coalesces concurrent loads of one key into one call. The call
// runs in its own goroutine with a context detached from every caller, so
// a caller that gives up (its context ends) fails nobody else, and the
// result still lands in the cache for the next reader.
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done chan struct{}
	res  loadResult
}

type loadResult struct {
	entry *Entry
	tier  Tier
	err   error
}

// do runs fn once for all concurrent callers of key. leader reports
// whether this caller started the call.
func (f *flight) do(ctx context.Context, key string, fn func(context.Context) loadResult) (res loadResult, leader bool) {
	c, leader := f.start(ctx, key, fn)
	select {
	case <-c.done:
		return c.res, leader
	case <-ctx.Done():
		return loadResult{err: fmt.Errorf("cache: waiting for %q: %w", key, ctx.Err())}, leader
	}
}

// goAsync starts fn for key unless a call for key is already running, and
// does not wait. It reports whether it started one.
func (f *flight) goAsync(ctx context.Context, key string, fn func(context.Context) loadResult) bool {
	_, started := f.start(ctx, key, fn)
	return started
}

func (f *flight) start(ctx context.Context, key string, fn func(context.Context) loadResult) (*call, bool) {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		return c, false
	}
	if f.calls == nil {
		f.calls = make(map[string]*call)
	}
	c := &call{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	go func() {
		defer func() {
			if p := recover(); p != nil {
				c.res = loadResult{err: fmt.Errorf("cache: load of %q panicked: %v", key, p)}
			}
			f.mu.Lock()
			delete(f.calls, key)
			f.mu.Unlock()
			close(c.done)
		}()
		c.res = fn(context.WithoutCancel(ctx))
	}()
	return c, true
}

// running reports whether a call for key is in progress.
func (f *flight) running(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.calls[key]
	return ok
}
