package rollout_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/sdk/abi"
)

// activeCacheManager returns a manager without automatic rollback whose
// active cache policy is the default one, version A, caching the
// catalogue for 1800 s, and that version's module.
func activeCacheManager(t *testing.T) (*rollout.Manager, []byte) {
	t.Helper()
	ctx := context.Background()
	mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: -1})
	wasm := versionWasm(t, "A")
	active, _ := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "cache", Wasm: wasm, Config: cacheConfig(1800), DeadlineMS: deadlineMS})
	if _, err := mgr.Activate(ctx, active.ID); err != nil {
		t.Fatal(err)
	}
	return mgr, wasm
}

// TestShadow runs a candidate beside the active version on every call:
// its decisions are compared, never served, and the figures show how
// often it agrees.
func TestShadow(t *testing.T) {
	ctx := context.Background()
	mgr, wasm := activeCacheManager(t)
	// The candidate caches the catalogue for 60 s instead of 1800 s: it
	// disagrees on catalogue requests only.
	cand, _ := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "candidate", Wasm: wasm, Config: cacheConfig(60), DeadlineMS: deadlineMS})
	if _, err := mgr.StartShadow(ctx, cand.ID, 1); err != nil {
		t.Fatal(err)
	}
	dec := mgr.Decider()
	reqs := []abi.CacheRequest{
		{Method: "GET", Route: "/api/challenges", Path: "/api/challenges", User: "1"},
		{Method: "GET", Route: "/api/challenges/:id", Path: "/api/challenges/7", User: "1"},
		{Method: "GET", Route: "/api/challenges/:id", Path: "/api/challenges/8", User: "2"},
		{Method: "GET", Route: "/api/challenges/:id", Path: "/api/challenges/9", User: "3"},
	}
	for range 25 {
		for i := range reqs {
			d, res := dec.Cache(ctx, &reqs[i])
			if res.Policy != "cache" || (i == 0 && d.TTLSeconds != 1800) {
				t.Fatalf("served by %s (ttl %d): the candidate's decision was used", res.Policy, d.TTLSeconds)
			}
		}
	}
	var st rollout.ShadowStats
	eventually(t, 10*time.Second, "100 comparisons", func() bool {
		s := mgr.Status().Shadows
		if len(s) == 1 {
			st = s[0]
		}
		return st.Compared+st.Errors+st.Dropped == 100
	})
	t.Logf("shadow: %+v", st)
	if st.Compared != 100 || st.Agreed != 75 || st.AgreementRate != 0.75 || st.CandidateMeanUS <= 0 {
		t.Fatalf("shadow stats %+v: want 100 compared, 75 agreed", st)
	}
	if rec, _ := mgr.Get(ctx, cand.ID); rec.Status != rollout.StatusShadow {
		t.Fatalf("candidate status %s, want shadow", rec.Status)
	}
	final, err := mgr.StopShadow(ctx, abi.KindCache)
	if err != nil || final.Compared != 100 {
		t.Fatalf("stop: %+v %v", final, err)
	}
	if len(mgr.Status().Shadows) != 0 {
		t.Fatal("shadow still listed after stop")
	}
	if rec, _ := mgr.Get(ctx, cand.ID); rec.Status != rollout.StatusInactive {
		t.Fatalf("candidate status %s after stop, want inactive", rec.Status)
	}
}

// TestAutomaticRollback: a freshly activated version that falls back on
// most calls is rolled back to the previous one and quarantined.
func TestAutomaticRollback(t *testing.T) {
	ctx := context.Background()
	guest := testGuest(t)
	mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: 0.5, RollbackMinCalls: 20, RollbackWindow: time.Minute})
	good, _ := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "good", Wasm: guest, Config: []byte(`{"mode": "ok"}`)})
	if _, err := mgr.Activate(ctx, good.ID); err != nil {
		t.Fatal(err)
	}
	bad, _ := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "bad", Wasm: guest, Config: []byte(`{"mode": "error"}`)})
	if _, err := mgr.Activate(ctx, bad.ID); err != nil {
		t.Fatal(err)
	}
	req := abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges"}
	eventually(t, 20*time.Second, "rolled back to the good version", func() bool {
		_, res := mgr.Decider().Cache(ctx, &req)
		return res.Policy == "good" && res.Outcome == policy.OutcomeOK
	})
	rec, _ := mgr.Get(ctx, bad.ID)
	if rec.Status != rollout.StatusQuarantined || !strings.Contains(rec.Reason, "fallback rate") {
		t.Fatalf("bad version: %s %q, want quarantined with the reason", rec.Status, rec.Reason)
	}
	if rec, _ := mgr.Get(ctx, good.ID); rec.Status != rollout.StatusActive {
		t.Fatalf("good version: %s, want active", rec.Status)
	}
	t.Logf("quarantined: %s", rec.Reason)
}

// TestWatchDir: in local mode a changed file of the policy directory
// becomes a new version that goes through the pipeline; a broken change
// is rejected and the active version keeps serving.
func TestWatchDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFile(t, dir, "cache.wasm", versionWasm(t, "A"))
	pf := func(ttl string) []byte {
		return []byte(`{"policies": [{"kind": "cache", "name": "cache", "file": "cache.wasm", "deadline_ms": 10, ` +
			`"config": {"rules": [{"route": "/api/challenges", "ttl_s": ` + ttl + `, "scope": "global"}]}}]}`)
	}
	writeFile(t, dir, "policies.json", pf("1800"))
	mgr := newManager(t, newRuntime(t), rollout.Config{RollbackThreshold: -1})
	if err := mgr.ImportDir(ctx, dir, false); err != nil {
		t.Fatal(err)
	}
	if err := mgr.WatchDir(dir, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ttl := func() uint32 {
		d, _ := mgr.Decider().Cache(ctx, &abi.CacheRequest{Method: "GET", Route: "/api/challenges", Path: "/api/challenges"})
		return d.TTLSeconds
	}
	if got := ttl(); got != 1800 {
		t.Fatalf("ttl %d, want 1800", got)
	}
	// Write through a temporary file and rename, as editors and deploys do.
	replace := func(name string, b []byte) {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	replace("policies.json", pf("600"))
	eventually(t, 20*time.Second, "the changed configuration serves", func() bool { return ttl() == 600 })
	// A corrupted module is rejected; the active version keeps serving.
	replace("cache.wasm", []byte("\x00asm\x01\x00\x00\x00garbage"))
	eventually(t, 20*time.Second, "the broken module rejected", func() bool {
		recs, _ := mgr.List(ctx)
		return len(recs) == 3 && recs[0].Status == rollout.StatusRejected
	})
	if got := ttl(); got != 600 {
		t.Fatalf("ttl %d after a broken change, want 600", got)
	}
}
