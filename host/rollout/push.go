package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/policy/policytest"
	"github.com/wingman-app/wingate/sdk/abi"
)

// Upload is a new version pushed through the admin API or read from the
// policy directory. Its limits are policy's (policy.MaxModuleBytes,
// MaxConfigBytes, MaxCasesBytes, MaxCases, MaxSignatureBytes,
// MaxNameBytes, MaxDeadlineMS), the same both ways.
type Upload struct {
	Kind        string
	Name        string
	Wasm        []byte
	Config      json.RawMessage
	DeadlineMS  float64
	DefaultTier string
	Signature   string
	Cases       json.RawMessage
	Source      string
}

// check validates u against the limits; every error wraps ErrInvalid,
// and a setting over its ceiling also a *policy.LimitError.
func (u *Upload) check() error {
	bad := func(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }
	over := func(field string, limit, got int, unit string) error {
		return bad(&policy.LimitError{Field: field, Limit: float64(limit), Unit: unit, Got: float64(got)})
	}
	if _, ok := abi.ParseKind(u.Kind); !ok {
		return bad(fmt.Errorf("kind %q: want cache, route or compress", u.Kind))
	}
	if u.Name == "" {
		u.Name = u.Kind
	}
	if err := policy.CheckName(u.Name); err != nil {
		return bad(err)
	}
	switch {
	case len(u.Wasm) == 0:
		return bad(fmt.Errorf("wasm: empty module"))
	case len(u.Wasm) > policy.MaxModuleBytes:
		return over("wasm", policy.MaxModuleBytes, len(u.Wasm), "bytes")
	case len(u.Config) > policy.MaxConfigBytes:
		return over("config", policy.MaxConfigBytes, len(u.Config), "bytes")
	case len(u.Config) > 0 && !json.Valid(u.Config):
		return bad(fmt.Errorf("config: not valid JSON"))
	case len(u.Signature) > policy.MaxSignatureBytes:
		return over("signature", policy.MaxSignatureBytes, len(u.Signature), "bytes")
	case len(u.Cases) > policy.MaxCasesBytes:
		return over("cases", policy.MaxCasesBytes, len(u.Cases), "bytes")
	}
	if len(u.Cases) > 0 {
		var cs []policytest.Case
		if json.Unmarshal(u.Cases, &cs) != nil {
			return bad(fmt.Errorf("cases: want a JSON array of cases (objects with name, input and want)"))
		}
		if len(cs) > policy.MaxCases {
			return over("cases", policy.MaxCases, len(cs), "cases")
		}
	}
	if err := policy.CheckDeadlineMS(u.DeadlineMS); err != nil {
		return bad(err)
	}
	if u.DefaultTier != "" {
		if u.Kind != "route" {
			return bad(fmt.Errorf("default_tier: only for kind route"))
		}
		if _, ok := policy.ParseTier(u.DefaultTier); !ok {
			return bad(fmt.Errorf("default_tier %q: want economy, standard or premium", u.DefaultTier))
		}
	}
	return nil
}

// Push stores a new version, inactive. Bad input, or input over a limit,
// is ErrInvalid.
func (m *Manager) Push(ctx context.Context, u Upload) (Record, error) {
	if err := u.check(); err != nil {
		return Record{}, err
	}
	// Data over the runtime's cap is a limit like the module's size:
	// refused before the version is stored (and kept for as long as the
	// store lives) or decoded.
	if err := m.rt.CheckData(u.Wasm); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if u.Source == "" {
		u.Source = "upload"
	}
	rec := Record{Digest: policy.ModuleSHA256(u.Wasm), Kind: u.Kind, Name: u.Name, Config: u.Config,
		DeadlineMS: u.DeadlineMS, DefaultTier: u.DefaultTier, Signature: strings.TrimSpace(u.Signature),
		Cases: u.Cases, Status: StatusInactive, Source: u.Source}
	if err := m.store.Put(ctx, &rec, u.Wasm); err != nil {
		return Record{}, storeFailed("store the version", err)
	}
	return rec, nil
}

// List returns every stored version, newest first, with this instance's
// own rejection reasons filled in where the store has none.
func (m *Manager) List(ctx context.Context) ([]Record, error) {
	recs, err := m.store.List(ctx)
	if err != nil {
		return nil, storeFailed("list versions", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range recs {
		if r, ok := m.local[recs[i].ID]; ok && recs[i].Reason == "" {
			recs[i].Reason = r
		}
	}
	return recs, nil
}

// Get returns one stored version.
func (m *Manager) Get(ctx context.Context, id int64) (Record, error) {
	rec, err := m.store.Get(ctx, id)
	return rec, storeFailed("read the version", err)
}

// KindOf parses a kind name, for callers outside the package.
func KindOf(s string) (abi.Kind, error) {
	k, ok := abi.ParseKind(s)
	if !ok {
		return 0, fmt.Errorf("%w: kind %q: want cache, route or compress", ErrInvalid, s)
	}
	return k, nil
}
