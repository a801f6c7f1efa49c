package rollout_test

import (
	"context"
	"testing"

	"github.com/wingman-app/wingate/host/rollout"
)

// BenchmarkActivate measures one activation of an already compiled
// version of the default cache policy: the pipeline (validation, loop
// guard rewrite, compilation through the cache, warm instances) and the
// switch, the replaced version draining and closing.
func BenchmarkActivate(b *testing.B) {
	ctx := context.Background()
	rt := newRuntime(b)
	mgr := newManager(b, rt, rollout.Config{RollbackThreshold: -1})
	var ids []int64
	for _, tag := range []string{"A", "B"} {
		r, err := mgr.Push(ctx, rollout.Upload{Kind: "cache", Wasm: versionWasm(b, tag), Config: cacheConfig(1800)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := mgr.Activate(ctx, r.ID); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	i := 0
	for b.Loop() {
		if _, err := mgr.Activate(ctx, ids[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
