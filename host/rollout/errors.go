package rollout

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of the Manager besides ErrNotFound and *StepError.
var (
	// ErrInvalid: the request names a bad kind, configuration or case
	// file, or a setting over its ceiling (then also a
	// *policy.LimitError).
	ErrInvalid = errors.New("rollout: invalid")
	// ErrNoRollbackTarget: the kind has no previous version.
	ErrNoRollbackTarget = errors.New("rollout: no previous version to roll back to")
	// ErrSuperseded: a newer activation, rollback or fleet sync of the
	// same kind started while this one was being checked; this one was
	// abandoned and changed nothing.
	ErrSuperseded = errors.New("rollout: superseded by a newer activation or rollback of the same kind; nothing changed")
	// ErrStore: the version store failed (the cause, a driver's error,
	// is wrapped for the log, never shown to a client).
	ErrStore = errors.New("rollout: the version store failed")
	// ErrClosed: the manager is closed.
	ErrClosed = errors.New("rollout: manager closed")
)

// storeFailed wraps a store error (other than ErrNotFound) in ErrStore.
func storeFailed(what string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrStore, what, err)
}

// Steps of the activation pipeline, as StepError.Step.
const (
	StepSignature = "signature"
	StepValidate  = "validate"
	StepCompile   = "compile"
	StepWarm      = "warm"
	StepSelfTest  = "self-test"
	StepSwitch    = "switch"
)

// StepError is why a version did not pass the activation pipeline: the
// step that failed and the cause. The active version is untouched.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return "rollout: " + e.Step + ": " + strings.TrimPrefix(e.Err.Error(), "rollout: ")
}

func (e *StepError) Unwrap() error { return e.Err }
