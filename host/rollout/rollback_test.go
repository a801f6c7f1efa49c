package rollout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/sdk/abi"
)

// servingName is the name of the cache policy that decides now.
func servingName(mgr *rollout.Manager) string {
	req := abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges"}
	_, res := mgr.Decider().Cache(context.Background(), &req)
	return res.Policy
}

// TestRollbackGoesBack: a rollback returns to the last good version
// before the current one; a second goes further back, never to the
// version the first replaced; --to names any version that was active and
// is neither rejected nor quarantined.
func TestRollbackGoesBack(t *testing.T) {
	ctx := context.Background()
	mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: -1})
	ids := map[string]int64{}
	for i, tag := range []string{"A", "B", "C"} {
		rec, err := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "cache-" + tag, Wasm: versionWasm(t, tag), Config: cacheConfig(1800 - i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mgr.Activate(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		ids[tag] = rec.ID
	}
	never, err := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "cache-never", Wasm: versionWasm(t, "D"), Config: cacheConfig(10)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"B", "A"} {
		rec, err := mgr.Rollback(ctx, abi.KindCache)
		if err != nil || rec.Name != "cache-"+want || servingName(mgr) != "cache-"+want {
			t.Fatalf("rollback: %s (%v), serving %s; want cache-%s", rec.Name, err, servingName(mgr), want)
		}
	}
	for _, tag := range []string{"B", "C"} {
		if rec, _ := mgr.Get(ctx, ids[tag]); rec.Status != rollout.StatusInactive || rec.Reason != rollout.ReasonRolledBack {
			t.Errorf("%s after the rollbacks: %s %q, want inactive %q", tag, rec.Status, rec.Reason, rollout.ReasonRolledBack)
		}
	}
	if _, err := mgr.Rollback(ctx, abi.KindCache); !errors.Is(err, rollout.ErrNoRollbackTarget) {
		t.Fatalf("third rollback: %v, want ErrNoRollbackTarget (no toggling back to B)", err)
	}
	// --to: a version active once comes back; one never active, one of
	// no such id and the active one itself are refused, changing nothing.
	for _, bad := range []int64{never.ID, 1 << 40, ids["A"]} {
		if _, err := mgr.RollbackTo(ctx, abi.KindCache, bad); !errors.Is(err, rollout.ErrNoRollbackTarget) {
			t.Errorf("rollback to %d: %v, want ErrNoRollbackTarget", bad, err)
		}
	}
	if got := servingName(mgr); got != "cache-A" {
		t.Fatalf("refused rollbacks changed the serving version to %s", got)
	}
	if rec, err := mgr.RollbackTo(ctx, abi.KindCache, ids["C"]); err != nil || servingName(mgr) != "cache-C" {
		t.Fatalf("rollback --to C: %v %v, serving %s", rec, err, servingName(mgr))
	}
}

// TestRollbackAfterAutomaticRollback: the automatic rollback goes to the
// last good version and quarantines the failing one; a manual rollback
// then goes one further back, never to the quarantined version, which
// --to refuses too.
func TestRollbackAfterAutomaticRollback(t *testing.T) {
	ctx := context.Background()
	guest := testGuest(t)
	mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: 0.5, RollbackMinCalls: 20, RollbackWindow: time.Minute})
	var recs []rollout.Record
	for _, v := range []struct{ name, mode string }{{"good-1", "ok"}, {"good-2", "ok"}, {"bad", "error"}} {
		rec, err := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: v.name, Wasm: guest, Config: []byte(`{"mode": "` + v.mode + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mgr.Activate(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	req := abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges"}
	eventually(t, 20*time.Second, "the automatic rollback to good-2", func() bool {
		_, res := mgr.Decider().Cache(ctx, &req)
		return res.Policy == "good-2" && res.Outcome == policy.OutcomeOK
	})
	if rec, _ := mgr.Get(ctx, recs[2].ID); rec.Status != rollout.StatusQuarantined || !strings.Contains(rec.Reason, "fallback rate") {
		t.Fatalf("bad: %s %q, want quarantined", rec.Status, rec.Reason)
	}
	rec, err := mgr.Rollback(ctx, abi.KindCache)
	if err != nil || rec.Name != "good-1" {
		t.Fatalf("manual rollback after the automatic one: %s %v, want good-1", rec.Name, err)
	}
	if _, err := mgr.Rollback(ctx, abi.KindCache); !errors.Is(err, rollout.ErrNoRollbackTarget) {
		t.Fatalf("second manual rollback: %v, want ErrNoRollbackTarget", err)
	}
	if _, err := mgr.RollbackTo(ctx, abi.KindCache, recs[2].ID); !errors.Is(err, rollout.ErrNoRollbackTarget) {
		t.Fatalf("rollback --to the quarantined version: %v, want refused", err)
	}
	if _, res := mgr.Decider().Cache(ctx, &req); res.Policy != "good-1" {
		t.Fatalf("serving %s, want good-1", res.Policy)
	}
}
