package policy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestIdlePoolOrder(t *testing.T) {
	var p idlePool
	a, b, c := &instance{}, &instance{}, &instance{}
	p.put(a)
	p.put(b)
	p.put(c)
	if got := p.get(); got != c {
		t.Fatal("get did not return the instance released last")
	}
	if got := p.oldest(); got != a {
		t.Fatal("oldest did not return the instance released first")
	}
	if p.len() != 1 || p.get() != b || p.get() != nil {
		t.Fatal("pool contents wrong")
	}

	// Waiters are served in arrival order.
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.wait(context.Background(), time.Minute); err != nil {
				t.Error(err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		for { // wait until it queues
			p.mu.Lock()
			n := len(p.waiters)
			p.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	for range 3 {
		p.put(&instance{})
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if order[0] != 0 || order[1] != 1 || order[2] != 2 {
		t.Errorf("waiters served in order %v, want [0 1 2]", order)
	}

	if _, err := p.wait(context.Background(), 10*time.Millisecond); !errors.Is(err, errPoolTimeout) {
		t.Errorf("empty pool: err %v, want errPoolTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.wait(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v, want context.Canceled", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiters) != 0 {
		t.Errorf("%d waiters left behind by callers that gave up", len(p.waiters))
	}
}

// TestIdlePoolHammer: many callers take and return a few instances with
// tiny timeouts; no instance is ever lost or handed to two callers.
func TestIdlePoolHammer(t *testing.T) {
	var p idlePool
	const n = 3
	for range n {
		p.put(&instance{})
	}
	var inUse sync.Map
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				in, err := p.wait(context.Background(), time.Duration(1+got.Load()%50)*time.Microsecond)
				if err != nil {
					continue
				}
				if _, dup := inUse.LoadOrStore(in, true); dup {
					t.Error("an instance was handed to two callers")
					return
				}
				got.Add(1)
				inUse.Delete(in)
				p.put(in)
			}
		}()
	}
	wg.Wait()
	if p.len() != n || got.Load() == 0 {
		t.Fatalf("%d idle instances after the hammer, want %d (%d acquisitions)", p.len(), n, got.Load())
	}
}
