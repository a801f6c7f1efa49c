package rollout

// InvalidError is bad input to the Manager: the field at fault and why,
// in the project's own words (safe to show to the caller). It matches
// ErrInvalid with errors.Is.
type InvalidError struct {
	Field  string
	Reason string
	Err    error // the underlying error, if any; for logs only
}

func (e *InvalidError) Error() string {
	s := "rollout: invalid: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the underlying error.
func (e *InvalidError) Unwrap() error { return e.Err }

func invalid(field, reason string) error { return &InvalidError{Field: field, Reason: reason} }
