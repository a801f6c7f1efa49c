package policy

import (
	"errors"
	"fmt"

	"github.com/wingman-app/wingate/sdk/abi"
)

// LoadError is why a module was refused at load. It names the part of
// the module at fault, what the host expected and what it found, e.g.
//
//	policy: load "cache": export wingate_decide: want func(i32, i32) -> i64, found func(i32) -> i64
type LoadError struct {
	Policy string // policy name from the Spec
	// Item is the export, import or section at fault, e.g.
	// "export wingate_decide", "import env.abort", "memory", "abi version".
	Item  string
	Want  string // what the host expected
	Found string // what the module has
	Err   error  // underlying error, if any
}

func (e *LoadError) Error() string {
	s := fmt.Sprintf("policy: load %q: %s", e.Policy, e.Item)
	if e.Want != "" || e.Found != "" {
		s += fmt.Sprintf(": want %s, found %s", e.Want, e.Found)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *LoadError) Unwrap() error { return e.Err }

// Errors of direct calls (Version.Cache, Version.Route, Version.Compress).
// They are wrapped in a *CallError.
var (
	// ErrTimeout: the call overran its deadline and was stopped.
	ErrTimeout = errors.New("policy: deadline exceeded")
	// ErrTrap: the guest trapped or exited; the instance was discarded.
	ErrTrap = errors.New("policy: guest trapped")
	// ErrPolicy: the guest returned an error status.
	ErrPolicy = errors.New("policy: guest returned an error")
	// ErrBadDecision: the guest's result could not be decoded or broke a
	// rule of its kind (e.g. compress keep indexes out of range).
	ErrBadDecision = errors.New("policy: invalid decision")
	// ErrMemoryQuota: the call succeeded but left the instance's memory
	// over the recycle quota (Spec.RecycleMemory); the instance was
	// recycled and the call counts as a failure.
	ErrMemoryQuota = errors.New("policy: instance memory over its quota")
	// ErrUnavailable: no instance could be acquired in time, or the
	// version is closed.
	ErrUnavailable = errors.New("policy: no instance available")
	// ErrKind: the version does not handle the requested kind.
	ErrKind = errors.New("policy: kind not handled by this module")
	// ErrQuarantined: the active version failed too many calls in a row.
	ErrQuarantined = errors.New("policy: version quarantined")
	// ErrNoPolicy: no version is active for the kind.
	ErrNoPolicy = errors.New("policy: no active policy")
)

// CallError is the error of a failed direct call.
type CallError struct {
	Kind    abi.Kind
	Policy  string
	Version string
	Err     error // one of the Err* sentinels, possibly wrapping detail
}

func (e *CallError) Error() string {
	return fmt.Sprintf("policy %s %s@%s: %v", e.Kind, e.Policy, e.Version, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// outcomeOf maps a call error onto the Outcome reported for it.
func outcomeOf(err error) Outcome {
	switch {
	case errors.Is(err, ErrTimeout):
		return OutcomeTimeout
	case errors.Is(err, ErrTrap):
		return OutcomeTrap
	}
	return OutcomeFallback
}
