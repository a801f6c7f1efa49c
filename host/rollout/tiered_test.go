package rollout_test

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/sdk/abi"
)

// TestMemStoreSharesModuleBytes: versions of one module (the bundle's
// kinds, a configuration change) keep one copy of its bytes.
func TestMemStoreSharesModuleBytes(t *testing.T) {
	ctx := context.Background()
	mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: -1})
	wasm := cacheWasm(t)
	var ids []int64
	for i, cfg := range [][]byte{cacheConfig(60), cacheConfig(120)} {
		rec, err := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "cache", Wasm: append([]byte(nil), wasm...), Config: cfg})
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		ids = append(ids, rec.ID)
	}
	store := rollout.NewMemStore()
	for range 2 {
		rec := rollout.Record{Kind: "cache", Name: "cache", Digest: policy.ModuleSHA256(wasm)}
		if err := store.Put(ctx, &rec, append([]byte(nil), wasm...)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	a, _ := store.Wasm(ctx, ids[2])
	b, _ := store.Wasm(ctx, ids[3])
	if unsafe.SliceData(a) != unsafe.SliceData(b) {
		t.Error("two versions of one module hold two copies of its bytes")
	}
}

// TestRollbackWatchWaitsForCompiled: a version a tiered start serves
// interpreted is not rolled back for the fallbacks of its interpreted
// calls; once it runs compiled, its own calls are watched as any fresh
// version's are (here all fail: it is rolled back, and without a
// previous version deactivated).
func TestRollbackWatchWaitsForCompiled(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector slows the interpreter past the start-up timeouts: the version would start compiled")
	}
	ctx := policy.WithTieredStart(context.Background())
	rt, err := policy.NewRuntime(context.Background(), policy.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	mgr := newManager(t, rt, rollout.Config{MinInstances: 1, MaxInstances: 2, RollbackMinCalls: 20})
	rec, err := mgr.Push(ctx, rollout.Upload{Kind: "route", Name: "failing", Wasm: testGuest(t), Config: []byte(`{"mode": "error"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Activate(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	v := mgr.Engine().Active(abi.KindRoute)
	if v == nil || v.ExecTier() != policy.Interpreted {
		t.Fatalf("activated %v; want the version interpreted (an empty compilation cache, a tiered start)", v)
	}
	decide := func() policy.Result {
		_, r := mgr.Decider().Route(context.Background(), &abi.RouteRequest{Message: "x"})
		return r
	}
	fallbacks := 0
	for v.ExecTier() == policy.Interpreted && fallbacks < 100 {
		if r := decide(); r.Outcome != policy.OutcomeOK {
			fallbacks++
		}
	}
	// Compiled, or (what must not happen) rolled back first.
	eventually(t, time.Minute, "the version compiled", func() bool {
		select {
		case <-v.Compiled():
			return true
		default:
		}
		if mgr.Engine().Active(abi.KindRoute) != v {
			t.Fatalf("rolled back on the interpreted tier (%d fallbacks there)", fallbacks)
		}
		decide()
		return false
	})
	eventually(t, 10*time.Second, "the compiled version rolled back", func() bool {
		decide()
		return mgr.Engine().Active(abi.KindRoute) == nil
	})
	if got, _ := mgr.Get(context.Background(), rec.ID); got.Status != rollout.StatusQuarantined {
		t.Errorf("status %s after the rollback, want quarantined", got.Status)
	}
}
