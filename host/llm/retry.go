package llm

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// RetryConfig says how a Retrying provider retries.
type RetryConfig struct {
	// Attempts is the total number of tries, at least 1.
	Attempts int
	// BaseDelay is the first backoff; each retry doubles it, with full
	// jitter, up to MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter is the longest retry-after the wrapper waits for; a
	// provider asking for longer fails at once so the caller can fall back
	// to another tier instead of stalling the user.
	MaxRetryAfter time.Duration
}

// DefaultRetryConfig returns 3 attempts, 200 ms doubling to 2 s, and
// retry-after honoured up to 10 s.
func DefaultRetryConfig() RetryConfig {
	return RetryConfig{Attempts: 3, BaseDelay: 200 * time.Millisecond, MaxDelay: 2 * time.Second, MaxRetryAfter: 10 * time.Second}
}

// Retrying wraps a Provider and retries calls that failed with a retryable
// error (429, 5xx, a broken stream) with exponential backoff, honouring the
// provider's retry-after. A streamed call is retried only while no text has
// reached the caller, so the caller never sees text twice. Safe for
// concurrent use.
type Retrying struct {
	p     Provider
	cfg   RetryConfig
	log   *slog.Logger
	sleep func(ctx context.Context, d time.Duration) error
}

var _ Provider = (*Retrying)(nil)

// NewRetrying wraps p. A nil log discards.
func NewRetrying(p Provider, cfg RetryConfig, log *slog.Logger) *Retrying {
	if cfg.Attempts < 1 {
		cfg.Attempts = 1
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retrying{p: p, cfg: cfg, log: log, sleep: Sleep}
}

// WithSleep replaces the wait between attempts (tests record the delays
// instead of waiting). It returns r.
func (r *Retrying) WithSleep(sleep func(ctx context.Context, d time.Duration) error) *Retrying {
	r.sleep = sleep
	return r
}

// Name returns the wrapped provider's name.
func (r *Retrying) Name() string { return r.p.Name() }

// Unwrap returns the wrapped provider.
func (r *Retrying) Unwrap() Provider { return r.p }

// Complete calls the wrapped provider, retrying as configured.
func (r *Retrying) Complete(ctx context.Context, req *Request, onDelta DeltaFunc) (*Response, error) {
	var emitted bool
	var deltas DeltaFunc
	if onDelta != nil {
		deltas = func(s string) error {
			emitted = true
			return onDelta(s)
		}
	}
	for attempt := 1; ; attempt++ {
		resp, err := r.p.Complete(ctx, req, deltas)
		if err == nil {
			return resp, nil
		}
		e := AsError(r.p.Name(), err)
		if !e.Retryable() || emitted || attempt >= r.cfg.Attempts || ctx.Err() != nil {
			return nil, e
		}
		d := r.backoff(attempt)
		if e.RetryAfter > 0 {
			if e.RetryAfter > r.cfg.MaxRetryAfter {
				return nil, e
			}
			d = e.RetryAfter
		}
		r.log.Warn("llm call failed, retrying", "provider", r.p.Name(), "model", req.Model,
			"kind", e.Kind.String(), "status", e.Status, "attempt", attempt, "wait", d)
		if err := r.sleep(ctx, d); err != nil {
			return nil, &Error{Provider: r.p.Name(), Kind: KindCanceled, Err: err}
		}
	}
}

func (r *Retrying) backoff(attempt int) time.Duration {
	d := r.cfg.BaseDelay << (attempt - 1)
	if d > r.cfg.MaxDelay || d <= 0 {
		d = r.cfg.MaxDelay
	}
	if d <= 0 {
		return 0
	}
	// Full jitter: spread retries of many callers over the whole window.
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d, or until ctx is done (its error).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
