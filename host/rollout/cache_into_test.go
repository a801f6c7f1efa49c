package rollout_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/sdk/abi"
)

// TestDeciderCacheInto: the rollout decider's allocation-free path gives
// the decisions Cache gives, allocates nothing without a shadow, and a
// shadow candidate still sees an intact copy of every sampled call even
// though the caller overwrites its buffer straight after.
func TestDeciderCacheInto(t *testing.T) {
	ctx := context.Background()
	mgr, wasm := activeCacheManager(t)
	dec := mgr.Decider()
	reqs := []abi.CacheRequest{
		{Method: "GET", Route: "/api/challenges", Path: "/api/challenges", User: "1"},
		{Method: "GET", Route: "/api/challenges/:id", Path: "/api/challenges/7", User: "1"},
		{Method: "GET", Route: "/api/users/:id/reputation", Path: "/api/users/9/reputation", User: "9"},
		{Method: "POST", Route: "/api/challenges/:id/complete", Path: "/api/challenges/7/complete", User: "3"},
	}
	var d abi.CacheDecision
	buf := make([]byte, 0, 512)
	for i := range reqs {
		want, wres := dec.Cache(ctx, &reqs[i])
		var res policy.Result
		buf, res = dec.CacheInto(ctx, &reqs[i], &d, buf[:0])
		if res.Outcome != wres.Outcome || res.Policy != wres.Policy {
			t.Fatalf("%s: CacheInto result %+v, Cache %+v", reqs[i].Path, res, wres)
		}
		if d.Action != want.Action || d.Key != want.Key || d.TTLSeconds != want.TTLSeconds || d.Scope != want.Scope ||
			d.StaleSeconds != want.StaleSeconds || !slices.Equal(d.Tags, want.Tags) {
			t.Fatalf("%s: CacheInto %+v, Cache %+v", reqs[i].Path, d, want)
		}
	}
	if allocs := testing.AllocsPerRun(200, func() {
		buf, _ = dec.CacheInto(ctx, &reqs[0], &d, buf[:0])
	}); allocs != 0 {
		t.Errorf("CacheInto without a shadow: %v allocs/op, want 0", allocs)
	}

	// A candidate identical to the active version must agree on every
	// sampled call: a copy still pointing into buf, which is scribbled
	// over after each call, would disagree.
	cand, _ := mgr.Push(ctx, rollout.Upload{Kind: "cache", Name: "candidate", Wasm: wasm, Config: cacheConfig(1800), DeadlineMS: deadlineMS})
	if _, err := mgr.StartShadow(ctx, cand.ID, 1); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		for i := range reqs {
			buf, _ = dec.CacheInto(ctx, &reqs[i], &d, buf[:0])
			for j := range buf {
				buf[j] = 'X'
			}
			d.Tags = d.Tags[:cap(d.Tags)]
			for j := range d.Tags {
				d.Tags[j] = "poisoned"
			}
		}
	}
	var st rollout.ShadowStats
	eventually(t, 10*time.Second, "80 comparisons", func() bool {
		if s := mgr.Status().Shadows; len(s) == 1 {
			st = s[0]
		}
		return st.Compared+st.Errors+st.Dropped == 80
	})
	if st.Compared != 80 || st.Agreed != 80 {
		t.Fatalf("shadow stats %+v: want 80 compared, 80 agreed", st)
	}
}
