package policy

import (
	"context"
	"testing"
	"time"
	"unsafe"
)

func TestLinearMemoryAllocator(t *testing.T) {
	const max = 64 << 16
	m := memoryAllocator.Allocate(1<<16, max)
	a := m.Reallocate(2 << 16)
	if len(a) != 2<<16 {
		t.Fatalf("len %d, want %d", len(a), 2<<16)
	}
	a[len(a)-1] = 7
	b := m.Reallocate(max)
	if len(b) != max || b[2<<16-1] != 7 {
		t.Fatalf("grown memory: len %d, kept byte %d", len(b), b[2<<16-1])
	}
	if _, ok := m.(*mmapMemory); ok && unsafe.SliceData(a) != unsafe.SliceData(b) {
		t.Error("a mapped memory moved when it grew")
	}
	if _, ok := m.(*mmapMemory); ok && m.Reallocate(max+1) != nil {
		t.Error("grew past its maximum")
	}
	m.Free()
	m.Free()

	h := &heapMemory{}
	h.Reallocate(10)[9] = 3
	if g := h.Reallocate(1000); len(g) != 1000 || g[9] != 3 {
		t.Error("heap memory lost its contents when it grew")
	}
}

// TestCloseWhileInstancesStart closes the runtime while instances start
// in the background: Close must wait for them (under -race, closing
// wazero under a running start is a data race), and nothing may hang.
func TestCloseWhileInstancesStart(t *testing.T) {
	rt := newRuntime(t, Options{})
	v := loadGuest(t, rt, "ok", "close", Spec{MinInstances: 1, MaxInstances: 6})
	for range 5 {
		v.grow()
	}
	done := make(chan error, 1)
	go func() { done <- rt.Close(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close did not return within a minute of instances starting")
	}
	if _, err := rt.Load(context.Background(), Spec{Name: "late"}, testGuest(t)); err == nil {
		t.Error("Load after Close succeeded")
	}
}
