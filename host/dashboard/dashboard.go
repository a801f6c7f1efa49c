// Package dashboard is the live performance dashboard: one page embedded
// in the binary (HTML, CSS and plain JavaScript drawing its own SVG
// charts; nothing from a CDN) and a Server-Sent Events stream that pushes
// the process's state to it every second and at once on every alert
// change.
//
// The package knows no HTTP framework: the server hands Stream a
// buffered writer and serves Asset's bytes.
package dashboard

import (
	"bufio"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/observe"
)

//go:embed assets
var assets embed.FS

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// ErrClosed is returned by Stream when the dashboard is closed.
var ErrClosed = errors.New("dashboard: closed")

// State is what the page draws: one JSON document per update.
type State struct {
	Metrics observe.Snapshot `json:"metrics"`
	Alerts  alert.Listing    `json:"alerts"`
	// Events are the latest alert state changes, newest first.
	Events []alert.Event `json:"events"`
	Rules  []alert.Rule  `json:"rules"`
}

// Config configures a Dashboard.
type Config struct {
	Metrics *observe.Metrics
	// Alerts may be nil (no alerting).
	Alerts *alert.Manager
	// Interval between pushes; default one second.
	Interval time.Duration
	Logger   *slog.Logger
}

// Dashboard serves the page and its stream. It is an alert.Notifier, so
// alert changes reach open pages at once. Safe for concurrent use.
type Dashboard struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	events  []alert.Event // newest last
	wake    chan struct{} // closed and replaced on every alert change
	cached  []byte
	cacheAt time.Time
	closed  chan struct{}
	once    sync.Once
}

var _ alert.Notifier = (*Dashboard)(nil)

// maxEvents is how many alert changes the page lists.
const maxEvents = 30

// New returns a dashboard over cfg's metrics and alerts.
func New(cfg Config) *Dashboard {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Dashboard{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}), closed: make(chan struct{})}
}

// Asset returns the embedded file name ("" is the page) and its content
// type.
func (d *Dashboard) Asset(name string) (body []byte, contentType string, ok bool) {
	if name == "" || name == "/" {
		name = "index.html"
	}
	name = path.Clean("/" + name)[1:]
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return nil, "", false
	}
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	return b, ct, true
}

// Notify records an alert change and wakes the open streams.
func (d *Dashboard) Notify(_ context.Context, ev alert.Event) {
	d.mu.Lock()
	d.events = append(d.events, ev)
	if len(d.events) > maxEvents {
		d.events = slices.Delete(d.events, 0, len(d.events)-maxEvents)
	}
	close(d.wake)
	d.wake = make(chan struct{})
	d.cached = nil
	d.mu.Unlock()
}

// State computes the current state.
func (d *Dashboard) State() State {
	s := State{Events: []alert.Event{}, Rules: []alert.Rule{}, Alerts: alert.Listing{Active: []alert.Alert{}, Recent: []alert.Alert{}}}
	if d.cfg.Metrics != nil {
		s.Metrics = d.cfg.Metrics.Snapshot()
	}
	if d.cfg.Alerts != nil {
		s.Alerts = d.cfg.Alerts.List()
		s.Rules = d.cfg.Alerts.Rules()
	}
	d.mu.Lock()
	for i := len(d.events) - 1; i >= 0; i-- {
		s.Events = append(s.Events, d.events[i])
	}
	d.mu.Unlock()
	return s
}

// encoded returns the JSON state, shared by the streams for half an
// interval so that many open pages cost one snapshot.
func (d *Dashboard) encoded() ([]byte, error) {
	d.mu.Lock()
	if d.cached != nil && time.Since(d.cacheAt) < d.cfg.Interval/2 {
		b := d.cached
		d.mu.Unlock()
		return b, nil
	}
	d.mu.Unlock()
	b, err := json.Marshal(d.State())
	if err != nil {
		return nil, fmt.Errorf("dashboard: state: %w", err)
	}
	d.mu.Lock()
	d.cached, d.cacheAt = b, time.Now()
	d.mu.Unlock()
	return b, nil
}

// Stream writes the state as Server-Sent Events ("state" events) to w
// every interval and on every alert change, until ctx ends, the dashboard
// is closed or a write fails (the client went away).
func (d *Dashboard) Stream(ctx context.Context, w *bufio.Writer) error {
	if _, err := w.WriteString("retry: 2000\n\n"); err != nil {
		return err
	}
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		d.mu.Lock()
		wake := d.wake
		d.mu.Unlock()
		b, err := d.encoded()
		if err != nil {
			return err
		}
		if err := writeEvent(w, "state", b); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.closed:
			return ErrClosed
		case <-wake:
		case <-t.C:
		}
	}
}

func writeEvent(w *bufio.Writer, name string, data []byte) error {
	w.WriteString("event: ")
	w.WriteString(name)
	w.WriteString("\ndata: ")
	w.Write(data) // JSON has no raw newline
	w.WriteString("\n\n")
	return w.Flush()
}

// Close ends the open streams (at shutdown, so they do not hold it up).
func (d *Dashboard) Close() {
	d.once.Do(func() { close(d.closed) })
}
