package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/wingman-app/wingate/sdk/abi"
)

// PoliciesFileName is the file in a policy directory that says which
// module serves which kind and with what configuration.
const PoliciesFileName = "policies.json"

// PoliciesFile is the schema of policies.json (its files and settings
// are under the limits of policylimits.go, the same as a push's):
//
//	{
//	  "policies": [
//	    {"kind": "cache", "name": "cache", "file": "cache.wasm", "deadline_ms": 2,
//	     "config": {"routes": {"/api/challenges": {"ttl_s": 1800}}}},
//	    {"kind": "route", "name": "route", "file": "route.wasm", "default_tier": "standard"},
//	    {"kind": "compress", "name": "compress", "file": "compress.wasm", "deadline_ms": 20}
//	  ]
//	}
type PoliciesFile struct {
	Policies []PolicyEntry `json:"policies"`
}

// PolicyEntry configures the policy serving one kind.
type PolicyEntry struct {
	// Kind is "cache", "route" or "compress"; at most one entry per kind.
	Kind string `json:"kind"`
	// Name identifies the policy in logs, metrics and attribution.
	Name string `json:"name"`
	// File is the module, relative to the policies file's directory.
	File string `json:"file"`
	// DeadlineMS is the per-call deadline in milliseconds (fractions
	// allowed); 0 or absent: DefaultDeadline of the kind; at most
	// MaxDeadlineMS.
	DeadlineMS float64 `json:"deadline_ms,omitempty"`
	// Config is any JSON value; its raw bytes are handed to the guest's
	// init handler. Absent: empty configuration.
	Config json.RawMessage `json:"config,omitempty"`
	// MinInstances and MaxInstances size the pool; 0: defaults; at most
	// MaxInstancesCeiling.
	MinInstances int `json:"min_instances,omitempty"`
	MaxInstances int `json:"max_instances,omitempty"`
	// DefaultTier is, for the route kind only, the fallback tier
	// ("economy", "standard" or "premium"; absent: "standard").
	DefaultTier string `json:"default_tier,omitempty"`
}

// ParseTier returns the tier named s (abi.ParseTier, the one mapping).
func ParseTier(s string) (abi.Tier, bool) { return abi.ParseTier(s) }

// ParsePoliciesFile decodes and checks a policies file. Errors name the
// entry and the field.
func ParsePoliciesFile(b []byte) (PoliciesFile, error) {
	var f PoliciesFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("policy: %s: %w", PoliciesFileName, err)
	}
	seen := map[string]bool{}
	for i, p := range f.Policies {
		at := fmt.Sprintf("policy: %s: policies[%d]", PoliciesFileName, i)
		if _, ok := abi.ParseKind(p.Kind); !ok {
			return f, fmt.Errorf("%s: kind %q: want cache, route or compress", at, p.Kind)
		}
		if seen[p.Kind] {
			return f, fmt.Errorf("%s: kind %q configured twice", at, p.Kind)
		}
		seen[p.Kind] = true
		if p.Name == "" {
			return f, fmt.Errorf("%s: name: required", at)
		}
		if err := CheckName(p.Name); err != nil {
			return f, fmt.Errorf("%s: %w", at, err)
		}
		if p.File == "" || filepath.IsAbs(p.File) || strings.HasPrefix(filepath.Clean(p.File), "..") {
			return f, fmt.Errorf("%s: file %q: want a path inside the policy directory", at, p.File)
		}
		if err := CheckDeadlineMS(p.DeadlineMS); err != nil {
			return f, fmt.Errorf("%s: %w", at, err)
		}
		if err := CheckInstances(p.MinInstances, p.MaxInstances); err != nil {
			return f, fmt.Errorf("%s: %w", at, err)
		}
		if len(p.Config) > MaxConfigBytes {
			return f, fmt.Errorf("%s: %w", at, &LimitError{Field: "config", Limit: MaxConfigBytes, Unit: "bytes", Got: float64(len(p.Config))})
		}
		if p.DefaultTier != "" {
			if p.Kind != "route" {
				return f, fmt.Errorf("%s: default_tier: only for kind route", at)
			}
			if _, ok := ParseTier(p.DefaultTier); !ok {
				return f, fmt.Errorf("%s: default_tier %q: want economy, standard or premium", at, p.DefaultTier)
			}
		}
	}
	return f, nil
}

// Spec returns the load spec of the entry.
func (p PolicyEntry) Spec() Spec {
	return Spec{
		Name:         p.Name,
		Config:       []byte(p.Config),
		Deadline:     time.Duration(p.DeadlineMS * float64(time.Millisecond)),
		MinInstances: p.MinInstances,
		MaxInstances: p.MaxInstances,
	}
}

// ErrNoPoliciesFile is returned (wrapped) by LoadDir when the directory
// has no policies file: every kind serves its fallback.
var ErrNoPoliciesFile = errors.New("policy: no policies file")

// ReadPoliciesFile reads and parses dir's policies file: ErrNoPoliciesFile
// (naming the path) when there is none.
func ReadPoliciesFile(dir string) (PoliciesFile, error) {
	b, err := ReadDirFile(dir, PoliciesFileName, MaxPoliciesFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return PoliciesFile{}, fmt.Errorf("%w: %s", ErrNoPoliciesFile, filepath.Join(dir, PoliciesFileName))
	}
	if err != nil {
		return PoliciesFile{}, err
	}
	return ParsePoliciesFile(b)
}

// LoadDir reads dir/policies.json, loads each entry's module and
// activates it in eng for its kind, replacing (and closing) the version
// active before. Entries that fail are skipped and reported in the
// returned error (errors.Join of *LoadError and file errors) while the
// others are still activated: a kind whose policy failed keeps its
// previous version, or serves the fallback. It returns the versions it
// activated.
func LoadDir(ctx context.Context, rt *Runtime, eng *Engine, dir string) ([]*Version, error) {
	f, err := ReadPoliciesFile(dir)
	if err != nil {
		return nil, err
	}
	var (
		loaded []*Version
		errs   []error
	)
	for _, p := range f.Policies {
		kind, _ := abi.ParseKind(p.Kind)
		wasm, err := ReadDirFile(dir, p.File, MaxModuleBytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: %s policy %q: %w", p.Kind, p.Name, err))
			continue
		}
		v, err := rt.Load(ctx, p.Spec(), wasm)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !v.Handles(kind) {
			v.Close()
			errs = append(errs, &LoadError{Policy: p.Name, Item: "export " + abi.ExportKinds, Want: "a module handling " + p.Kind, Found: fmt.Sprint(v.Kinds())})
			continue
		}
		if p.DefaultTier != "" {
			t, _ := ParseTier(p.DefaultTier)
			eng.SetDefaultTier(t)
		}
		if err := eng.Replace(kind, v); err != nil {
			v.Close()
			errs = append(errs, err)
			continue
		}
		loaded = append(loaded, v)
	}
	return loaded, errors.Join(errs...)
}
