package rollout_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
)

// FuzzPushLimits: a push's parameters, whatever they are, are either
// refused with ErrInvalid or stored within every limit.
func FuzzPushLimits(f *testing.F) {
	f.Add("cache", "cache", []byte(`{"a":1}`), 2.0, "", []byte(`[]`), "")
	f.Add("route", "r-1", []byte(`{}`), 1e9, "premium", []byte(`[{"name":"x"}]`), "sig")
	f.Add("compress", "../x", []byte(`{`), -1.0, "gold", []byte(`{}`), "")
	mgr := newManager(f, newRuntime(f), rollout.Config{})
	f.Fuzz(func(t *testing.T, kind, name string, config []byte, deadline float64, tier string, cases []byte, sig string) {
		rec, err := mgr.Push(context.Background(), rollout.Upload{Kind: kind, Name: name, Wasm: []byte("\x00asm"), Config: config,
			DeadlineMS: deadline, DefaultTier: tier, Cases: cases, Signature: sig})
		if err != nil {
			if !errors.Is(err, rollout.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if policy.CheckName(rec.Name) != nil || policy.CheckDeadlineMS(rec.DeadlineMS) != nil || len(rec.Config) > policy.MaxConfigBytes ||
			len(rec.Cases) > policy.MaxCasesBytes || len(rec.Signature) > policy.MaxSignatureBytes {
			t.Fatalf("stored a version over the limits: %+v", rec)
		}
	})
}
