package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// LogNotifier writes every change to a logger: firing at warn (error for
// critical alerts), the others at info.
type LogNotifier struct {
	Logger *slog.Logger
}

var _ Notifier = LogNotifier{}

// Notify logs ev.
func (l LogNotifier) Notify(ctx context.Context, ev Event) {
	level := slog.LevelInfo
	if ev.State == StateFiring {
		level = slog.LevelWarn
		if ev.Severity == SeverityCritical {
			level = slog.LevelError
		}
	}
	args := []any{"rule", ev.Rule, "state", string(ev.State), "severity", ev.Severity, "value", ev.Value, "summary", ev.Summary}
	for k, v := range ev.Labels {
		args = append(args, "label."+k, v)
	}
	l.Logger.Log(ctx, level, "alert "+string(ev.State), args...)
}

// WebhookPayload is the JSON body POSTed for each notified change.
type WebhookPayload struct {
	// Version of the payload format: "1".
	Version string `json:"version"`
	// Status is the alert's new state.
	Status State `json:"status"`
	// Source names the sender (the instance), when configured.
	Source string    `json:"source,omitempty"`
	Alert  Alert     `json:"alert"`
	From   State     `json:"from,omitempty"`
	SentAt time.Time `json:"sent_at"`
}

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	URL string
	// Source is copied into every payload.
	Source string
	// States are the states notified; default firing and resolved.
	States []State
	// Client defaults to a client with a 10 s timeout.
	Client *http.Client
	// Attempts per notification (default 6) and the backoff before the
	// second (default 500 ms), doubled each time up to MaxBackoff (30 s).
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Queue is how many notifications may wait; past it new ones are
	// dropped and logged (default 256).
	Queue  int
	Logger *slog.Logger
}

// Webhook POSTs changes as JSON to a URL from a goroutine of its own,
// retrying with exponential backoff on network errors, 5xx and 429.
type Webhook struct {
	cfg    WebhookConfig
	log    *slog.Logger
	queue  chan WebhookPayload
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

var _ Notifier = (*Webhook)(nil)

// NewWebhook starts a webhook sender; Close stops it.
func NewWebhook(cfg WebhookConfig) *Webhook {
	if len(cfg.States) == 0 {
		cfg.States = []State{StateFiring, StateResolved}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 6
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{cfg: cfg, log: cfg.Logger, queue: make(chan WebhookPayload, cfg.Queue)}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.wg.Add(1)
	go w.run()
	return w
}

// Notify queues ev if its state is one the webhook sends.
func (w *Webhook) Notify(_ context.Context, ev Event) {
	send := false
	for _, s := range w.cfg.States {
		send = send || s == ev.State
	}
	if !send {
		return
	}
	p := WebhookPayload{Version: "1", Status: ev.State, Source: w.cfg.Source, Alert: ev.Alert, From: ev.From}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	select {
	case w.queue <- p:
	default:
		w.log.Error("alert: webhook queue full, notification dropped", "rule", ev.Rule, "state", string(ev.State))
	}
}

// Close stops accepting notifications and waits up to ctx's deadline for
// the queued ones to be sent; past it, pending retries are abandoned.
func (w *Webhook) Close(ctx context.Context) {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.cancel()
		<-done
	}
	w.cancel()
}

func (w *Webhook) run() {
	defer w.wg.Done()
	for p := range w.queue {
		w.deliver(p)
	}
}

func (w *Webhook) deliver(p WebhookPayload) {
	backoff := w.cfg.Backoff
	var err error
	for attempt := 1; attempt <= w.cfg.Attempts; attempt++ {
		p.SentAt = time.Now().UTC()
		var retry bool
		retry, err = w.post(p)
		if err == nil {
			return
		}
		if !retry || attempt == w.cfg.Attempts {
			break
		}
		w.log.Debug("alert: webhook failed, retrying", "attempt", attempt, "in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-w.ctx.Done():
			t.Stop()
			w.log.Error("alert: webhook abandoned at shutdown", "rule", p.Alert.Rule, "state", string(p.Status), "err", err)
			return
		case <-t.C:
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
	w.log.Error("alert: webhook notification failed", "rule", p.Alert.Rule, "state", string(p.Status), "err", err)
}

// post sends one attempt; retry says whether another attempt may help.
func (w *Webhook) post(p WebhookPayload) (retry bool, err error) {
	body, err := json.Marshal(p)
	if err != nil {
		return false, fmt.Errorf("alert: webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(w.ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("alert: webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wingate-alerts/1")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return true, fmt.Errorf("alert: webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("alert: webhook: status %d", resp.StatusCode)
	}
	return false, fmt.Errorf("alert: webhook: status %d", resp.StatusCode)
}
