package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// retainedVerified bounds Manager.verified.
const retainedVerified = 4

type verifiedModule struct {
	id          int64
	digest, sig string
	wasm        []byte
}

// verifiedWasm returns rec's module bytes, read from the store and
// checked against its digest and, when a key is configured, its
// signature; or the bytes of an earlier such check. Records never
// change, so activating one of them again (a rollback, a swap back)
// skips reading, hashing and verifying a few MiB.
func (m *Manager) verifiedWasm(ctx context.Context, rec Record) ([]byte, error) {
	m.mu.Lock()
	for i, vm := range m.verified {
		if vm.id == rec.ID && vm.digest == rec.Digest && vm.sig == rec.Signature {
			m.verified = append(append(m.verified[:i:i], m.verified[i+1:]...), vm)
			m.mu.Unlock()
			return vm.wasm, nil
		}
	}
	m.mu.Unlock()
	wasm, err := m.store.Wasm(ctx, rec.ID)
	if err != nil {
		return nil, storeFailed("read the module", err)
	}
	if policy.ModuleSHA256(wasm) != rec.Digest {
		return nil, &StepError{StepValidate, errors.New("module bytes do not match the recorded digest")}
	}
	if m.cfg.PublicKey != nil {
		if err := Verify(m.cfg.PublicKey, wasm, rec.Signature); err != nil {
			return nil, &StepError{StepSignature, err}
		}
	}
	m.mu.Lock()
	m.verified = append(m.verified, verifiedModule{rec.ID, rec.Digest, rec.Signature, wasm})
	if len(m.verified) > retainedVerified {
		m.verified = slices.Delete(m.verified, 0, 1)
	}
	m.mu.Unlock()
	return wasm, nil
}

// errCheckTimeout is the cause of a check that outlived CheckTimeout.
var errCheckTimeout = errors.New("check timeout")

// check runs the pipeline up to, not including, the switch: signature,
// validation, compilation, warm instances and the bundled case files.
// It holds no lock. o (may be nil) records the step in progress; ctx's
// end stops it between steps and between cases.
func (m *Manager) check(ctx context.Context, rec Record, o *op) (*policy.Version, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, m.cfg.CheckTimeout, errCheckTimeout)
	defer cancel()
	step := func(s string) { o.setStep(s) }
	stopped := func(s string) error {
		if errors.Is(context.Cause(ctx), errCheckTimeout) {
			return &StepError{s, fmt.Errorf("the check took longer than %s", m.cfg.CheckTimeout)}
		}
		return context.Cause(ctx)
	}
	kind, ok := abi.ParseKind(rec.Kind)
	if !ok {
		return nil, &StepError{StepValidate, fmt.Errorf("unknown kind %q", rec.Kind)}
	}
	step(StepSignature)
	wasm, err := m.verifiedWasm(ctx, rec)
	if err != nil {
		return nil, err
	}
	spec := policy.Spec{Name: rec.Name, Config: rec.Config, Digest: rec.Digest, MinInstances: m.cfg.MinInstances, MaxInstances: m.cfg.MaxInstances}
	// Warm as many instances as the version serving now has grown to, so
	// that the first requests after the switch find them ready instead of
	// starting instances on their own path.
	if cur := m.eng.Active(kind); cur != nil {
		if n := cur.Stats().Instances; n > spec.MinInstances {
			spec.MinInstances = n
			if spec.MaxInstances > 0 && n > spec.MaxInstances {
				spec.MinInstances = spec.MaxInstances
			}
		}
	}
	if rec.DeadlineMS > 0 {
		spec.Deadline = time.Duration(rec.DeadlineMS * float64(time.Millisecond))
	}
	step(StepWarm)
	v, err := m.rt.Load(ctx, spec, wasm)
	if err != nil {
		var le *policy.LoadError
		switch {
		case errors.As(err, &le) && le.Item == "module" && strings.Contains(err.Error(), "compile"):
			return nil, &StepError{StepCompile, err}
		case errors.As(err, &le) && le.Item != "instance" && le.Item != "init":
			return nil, &StepError{StepValidate, err}
		case ctx.Err() != nil:
			return nil, stopped(StepWarm)
		default:
			return nil, &StepError{StepWarm, err}
		}
	}
	if !v.Handles(kind) {
		v.Close()
		return nil, &StepError{StepValidate, fmt.Errorf("the module has no %s handler (it handles %v)", kind, v.Kinds())}
	}
	if ctx.Err() != nil {
		v.Close()
		return nil, stopped(StepWarm)
	}
	if len(rec.Cases) > 0 {
		step(StepSelfTest)
		if err := m.selfTest(ctx, v, kind, rec.Cases); err != nil {
			v.Close()
			if ctx.Err() != nil {
				return nil, stopped(StepSelfTest)
			}
			return nil, err
		}
	}
	return v, nil
}

// selfTest runs the version's case files against v, stopping between
// cases when ctx ends.
func (m *Manager) selfTest(ctx context.Context, v *policy.Version, kind abi.Kind, raw json.RawMessage) error {
	var cases []policytest.Case
	if json.Unmarshal(raw, &cases) != nil {
		return &StepError{StepSelfTest, errors.New("case files: want a JSON array of cases")}
	}
	var failed []string
	for _, c := range cases {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r := policytest.RunCase(ctx, v, kind, c); !r.Passed() {
			failed = append(failed, r.String())
		}
	}
	if len(failed) > 0 {
		return &StepError{StepSelfTest, fmt.Errorf("%d of %d cases failed; first: %s", len(failed), len(cases), failed[0])}
	}
	return nil
}

// reject records a failed pipeline: in the store when the version is not
// serving anywhere, and for this instance.
func (m *Manager) reject(ctx context.Context, rec Record, err error) {
	m.mu.Lock()
	m.local[rec.ID] = err.Error()
	m.mu.Unlock()
	if rec.Status != StatusActive && rec.Status != StatusShadow {
		if serr := m.store.SetStatus(ctx, rec.ID, StatusRejected, err.Error()); serr != nil {
			m.log.Warn("rollout: record rejection", "id", rec.ID, "err", serr)
		}
	}
	m.log.Warn("rollout: version rejected; the active version keeps serving",
		"id", rec.ID, "kind", rec.Kind, "policy", rec.Name, "version", rec.Short(), "err", err)
}

// failed reports whether err is a verdict on the version (to record as a
// rejection) rather than the operation's own end (superseded, closed, the
// caller gone, the store down).
func failed(err error) bool {
	var se *StepError
	return errors.As(err, &se)
}
