// Package alert evaluates alerting rules over the process's rolling
// metrics on a ticker, moves each alert through pending → firing →
// resolved, and notifies the log, a webhook and the dashboard of every
// change.
//
// A rule's expression selects the samples that are wrong now; each
// selected label set is one alert. It is pending while the expression has
// held for less than the rule's For, then firing; once the expression
// stops holding it keeps firing for KeepFiringFor, then resolves. A
// pending alert whose expression stops holding is dropped silently.
package alert

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is an alert's state.
type State string

// The states.
const (
	StatePending  State = "pending"
	StateFiring   State = "firing"
	StateResolved State = "resolved"
)

// Alert is one alert: a rule and the labels of the sample it selected.
type Alert struct {
	Rule     string            `json:"rule"`
	Labels   map[string]string `json:"labels"`
	Severity string            `json:"severity"`
	State    State             `json:"state"`
	Summary  string            `json:"summary"`
	// Value is the sample's value at the latest evaluation it held.
	Value float64 `json:"value"`
	// ActiveAt is when the expression started holding; FiredAt when the
	// alert fired; ResolvedAt when it resolved.
	ActiveAt   time.Time `json:"active_at"`
	FiredAt    time.Time `json:"fired_at,omitzero"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// LastTrueAt is the latest evaluation at which the expression held.
	LastTrueAt time.Time `json:"last_true_at"`
}

// ID identifies the alert: its rule and labels.
func (a *Alert) ID() string { return alertID(a.Rule, a.Labels) }

func alertID(rule string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(rule)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString("|" + k + "=" + labels[k])
	}
	return b.String()
}

// Event is one change of an alert's state.
type Event struct {
	Alert
	// From is the state before the change; empty for a new alert.
	From State     `json:"from,omitempty"`
	At   time.Time `json:"at"`
}

// Notifier receives every state change. Notify is called from the
// evaluation loop and must not block for long (queue slow work).
type Notifier interface {
	Notify(ctx context.Context, ev Event)
}

// Clock is the time source of the evaluation loop; tests use a fake one.
type Clock interface {
	Now() time.Time
	NewTicker(d time.Duration) Ticker
}

// Ticker is the part of time.Ticker the loop uses.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTicker returns a time.Ticker.
func (SystemClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Config configures a Manager.
type Config struct {
	Rules     []Rule
	Source    Source
	Notifiers []Notifier
	// Interval between evaluations; default 5 s.
	Interval time.Duration
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger receives evaluation errors. Nil discards them.
	Logger *slog.Logger
	// Recent is how many resolved alerts are kept for listing; default 50.
	Recent int
}

// Manager evaluates rules and holds the alerts. It is safe for concurrent
// use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	active   map[string]*Alert
	recent   []Alert // newest last
	lastErr  map[string]string
	lastEval time.Time
}

// New returns a manager; Run starts its evaluation loop.
func New(cfg Config) *Manager {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Recent <= 0 {
		cfg.Recent = 50
	}
	return &Manager{cfg: cfg, log: cfg.Logger, active: map[string]*Alert{}, lastErr: map[string]string{}}
}

// Rules returns the rules evaluated.
func (m *Manager) Rules() []Rule { return slices.Clone(m.cfg.Rules) }

// Run evaluates the rules at every tick until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := m.cfg.Clock.NewTicker(m.cfg.Interval)
	defer t.Stop()
	m.Eval(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			m.Eval(ctx)
		}
	}
}

// Eval evaluates every rule once, at the clock's current time, and
// notifies the changes. It returns the changes.
func (m *Manager) Eval(ctx context.Context) []Event {
	now := m.cfg.Clock.Now()
	type result struct {
		rule    *Rule
		matches []Match
		err     error
	}
	results := make([]result, len(m.cfg.Rules))
	for i := range m.cfg.Rules {
		r := &m.cfg.Rules[i]
		ms, err := r.Expr.Eval(m.cfg.Source)
		results[i] = result{r, ms, err}
	}

	var events []Event
	m.mu.Lock()
	m.lastEval = now
	for _, res := range results {
		r := res.rule
		if res.err != nil {
			if m.lastErr[r.Name] != res.err.Error() {
				m.log.Error("alert: rule evaluation failed", "rule", r.Name, "err", res.err)
				m.lastErr[r.Name] = res.err.Error()
			}
			continue // keep the rule's alerts as they are
		}
		delete(m.lastErr, r.Name)
		held := map[string]bool{}
		for _, mt := range res.matches {
			id := alertID(r.Name, mt.Labels)
			held[id] = true
			a := m.active[id]
			if a == nil {
				a = &Alert{Rule: r.Name, Labels: maps.Clone(mt.Labels), Severity: r.Severity, State: StatePending, ActiveAt: now}
				if a.Labels == nil {
					a.Labels = map[string]string{}
				}
				m.active[id] = a
				a.Value, a.LastTrueAt = mt.Value, now
				a.Summary = r.summarise(a.Labels, a.Value)
				events = append(events, Event{Alert: *a, At: now})
			}
			a.Value, a.LastTrueAt = mt.Value, now
			a.Summary = r.summarise(a.Labels, a.Value)
			if a.State == StatePending && now.Sub(a.ActiveAt) >= r.For {
				a.State, a.FiredAt = StateFiring, now
				events = append(events, Event{Alert: *a, From: StatePending, At: now})
			}
		}
		for id, a := range m.active {
			if a.Rule != r.Name || held[id] {
				continue
			}
			switch a.State {
			case StatePending:
				delete(m.active, id)
			case StateFiring:
				if now.Sub(a.LastTrueAt) >= r.KeepFiringFor {
					a.State, a.ResolvedAt = StateResolved, now
					delete(m.active, id)
					m.recent = append(m.recent, *a)
					if len(m.recent) > m.cfg.Recent {
						m.recent = slices.Delete(m.recent, 0, len(m.recent)-m.cfg.Recent)
					}
					events = append(events, Event{Alert: *a, From: StateFiring, At: now})
				}
			}
		}
	}
	m.mu.Unlock()

	for _, ev := range events {
		for _, n := range m.cfg.Notifiers {
			n.Notify(ctx, ev)
		}
	}
	return events
}

// Listing is what GET /api/alerts returns.
type Listing struct {
	// Active holds pending and firing alerts, firing and most severe first.
	Active []Alert `json:"active"`
	// Recent holds resolved alerts, newest first.
	Recent []Alert `json:"recent"`
	// EvaluatedAt is the time of the latest evaluation.
	EvaluatedAt time.Time `json:"evaluated_at,omitzero"`
}

// List returns the active and recently resolved alerts.
func (m *Manager) List() Listing {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := Listing{Active: []Alert{}, Recent: []Alert{}, EvaluatedAt: m.lastEval}
	for _, a := range m.active {
		c := *a
		c.Labels = maps.Clone(a.Labels)
		l.Active = append(l.Active, c)
	}
	slices.SortFunc(l.Active, func(a, b Alert) int {
		if a.State != b.State {
			if a.State == StateFiring {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(severityRank(a.Severity), severityRank(b.Severity)); c != 0 {
			return c
		}
		if c := a.ActiveAt.Compare(b.ActiveAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID(), b.ID())
	})
	for i := len(m.recent) - 1; i >= 0; i-- {
		l.Recent = append(l.Recent, m.recent[i])
	}
	return l
}

func severityRank(s string) int {
	switch s {
	case SeverityCritical:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}
