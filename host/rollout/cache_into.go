package rollout

import (
	"context"
	"strings"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/sdk/abi"
)

// CacheInto is Cache for callers that decide often and keep little, like
// policy.Engine.CacheInto: the decision goes into d and its strings are
// views of the bytes appended to buf, which CacheInto returns. The cache
// middleware takes this path, so production's decider (rollout, shadowing
// and quarantine) allocates no more than the bare engine on a hit. A
// sampled call for a shadow candidate copies the request and decision out
// of the caller's memory before queueing them, as Cache does; only that
// sampled call allocates.
func (d *Decider) CacheInto(ctx context.Context, req *abi.CacheRequest, dec *abi.CacheDecision, buf []byte) ([]byte, policy.Result) {
	buf, res := d.eng.CacheInto(ctx, req, dec, buf)
	if run := d.shadow[abi.KindCache].Load(); run != nil && run.sampled() {
		r := abi.CacheRequest{Method: strings.Clone(req.Method), Route: strings.Clone(req.Route),
			Path: strings.Clone(req.Path), Query: strings.Clone(req.Query), User: strings.Clone(req.User)}
		a := *dec
		a.Key = strings.Clone(dec.Key)
		a.Tags = make([]string, len(dec.Tags))
		for i, t := range dec.Tags {
			a.Tags[i] = strings.Clone(t)
		}
		run.enqueue(shadowJob{cacheReq: &r, cacheDec: a, res: res})
	}
	return buf, res
}
