package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind classifies a provider failure; callers branch on it with errors.Is
// against the sentinel errors below.
type Kind uint8

// The kinds of failure.
const (
	KindUnavailable Kind = iota // 5xx, overloaded, network failure: retry, then fall back
	KindRateLimited             // 429: retry after the advised delay, then fall back
	KindBadRequest              // 400, 404, 413, 422: the request itself is wrong
	KindAuth                    // 401, 403: credentials
	KindStream                  // the stream broke or was malformed
	KindCanceled                // the caller's context ended
)

// Sentinel errors matched by *Error.Is according to its Kind.
var (
	ErrUnavailable = errors.New("llm: provider unavailable")
	ErrRateLimited = errors.New("llm: rate limited")
	ErrBadRequest  = errors.New("llm: bad request")
	ErrAuth        = errors.New("llm: authentication failed")
	ErrStream      = errors.New("llm: stream broken")
	ErrCanceled    = errors.New("llm: canceled")
)

var kindSentinels = [...]error{ErrUnavailable, ErrRateLimited, ErrBadRequest, ErrAuth, ErrStream, ErrCanceled}

// String returns the kind's label.
func (k Kind) String() string {
	switch k {
	case KindUnavailable:
		return "unavailable"
	case KindRateLimited:
		return "rate_limited"
	case KindBadRequest:
		return "bad_request"
	case KindAuth:
		return "auth"
	case KindStream:
		return "stream"
	case KindCanceled:
		return "canceled"
	}
	return "unknown"
}

// Error is a provider failure.
type Error struct {
	Provider string
	Kind     Kind
	// Status is the HTTP status, 0 when the failure was not an HTTP answer.
	Status int
	// Type is the provider's own error type (rate_limit_error, …).
	Type    string
	Message string
	// RetryAfter is the delay the provider asked for, 0 when none.
	RetryAfter time.Duration
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("llm: ")
	b.WriteString(e.Provider)
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Type != "" {
		b.WriteString(" ")
		b.WriteString(e.Type)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's Kind.
func (e *Error) Is(target error) bool {
	return int(e.Kind) < len(kindSentinels) && kindSentinels[e.Kind] == target
}

// Retryable reports whether the same call may succeed later.
func (e *Error) Retryable() bool {
	return e.Kind == KindUnavailable || e.Kind == KindRateLimited || e.Kind == KindStream
}

// KindForStatus maps an HTTP status of a failed call to a Kind.
func KindForStatus(status int) Kind {
	switch {
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return KindAuth
	case status == http.StatusRequestTimeout || status == http.StatusConflict:
		return KindUnavailable
	case status >= 500:
		return KindUnavailable
	case status >= 400:
		return KindBadRequest
	}
	return KindUnavailable
}

// ParseRetryAfter reads the delay a provider asks for from the response
// headers: retry-after-ms (milliseconds), then retry-after (seconds or an
// HTTP date). It returns 0 when there is none or it cannot be read.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("retry-after"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 || s > 1e6 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// AsError returns err as an *Error, wrapping anything else as a failure of
// kind KindUnavailable (or KindCanceled for context errors) of provider.
func AsError(provider string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	k := KindUnavailable
	if isContextErr(err) {
		k = KindCanceled
	}
	return &Error{Provider: provider, Kind: k, Err: err}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
