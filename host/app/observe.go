package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/dashboard"
	"github.com/wingman-app/wingate/host/observe"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/store"
)

// observeHost is the observability of a serve process: metrics, alerts
// (evaluated in the background), the dashboard and, when configured,
// traces.
type observeHost struct {
	metrics *observe.Metrics
	alerts  *alert.Manager
	dash    *dashboard.Dashboard
	webhook *alert.Webhook
	cancel  context.CancelFunc
	done    chan struct{}
	tracing *observe.Tracing
}

// startObserve builds the metrics, the alert manager (the rules file
// rulesPath, or the shipped rules when empty; notifications to the log,
// the dashboard and webhookURL when set) and the dashboard, and starts
// the alert evaluation loop. Traces go to OTLP when
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is
// set.
func startObserve(ctx context.Context, rulesPath, webhookURL string, getenv func(string) string, log *slog.Logger) (*observeHost, error) {
	m, err := observe.New(observe.Options{Logger: log, ServiceName: "wingate"})
	if err != nil {
		return nil, err
	}
	rules := alert.DefaultRules()
	if rulesPath != "" {
		if rules, err = alert.LoadRules(rulesPath); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
	}
	o := &observeHost{metrics: m, done: make(chan struct{})}
	notifiers := []alert.Notifier{alert.LogNotifier{Logger: log.With("component", "alerts")}}
	if webhookURL != "" {
		o.webhook = alert.NewWebhook(alert.WebhookConfig{URL: webhookURL, Logger: log})
		notifiers = append(notifiers, o.webhook)
	}
	dash := &lateNotifier{}
	notifiers = append(notifiers, dash)
	o.alerts = alert.New(alert.Config{Rules: rules, Source: m, Notifiers: notifiers, Logger: log})
	o.dash = dashboard.New(dashboard.Config{Metrics: m, Alerts: o.alerts, Logger: log})
	dash.n = o.dash
	if o.tracing, err = observe.StartTracing(ctx, getenv, log); err != nil {
		log.Warn("tracing disabled", "err", err)
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.cancel = cancel
	go func() {
		defer close(o.done)
		o.alerts.Run(actx)
	}()
	log.Info("observability", "alert_rules", len(rules), "webhook", webhookURL != "", "tracing", o.tracing != nil)
	return o, nil
}

// lateNotifier hands alert changes to the dashboard, built after the
// manager it shows.
type lateNotifier struct{ n alert.Notifier }

func (l *lateNotifier) Notify(ctx context.Context, ev alert.Event) {
	if l.n != nil {
		l.n.Notify(ctx, ev)
	}
}

// watch wires the observer hooks of the host's parts into the metrics.
func (o *observeHost) watchStore(st store.Store) {
	if p, ok := st.(store.PoolStatser); ok {
		o.metrics.WatchPool(p)
	}
}

func (o *observeHost) watchCache(c *cache.Cache, redis bool) {
	if !redis {
		return
	}
	if c.Stats().RedisUp {
		o.metrics.ObserveRedisBreaker(observe.BreakerClosed)
	} else {
		o.metrics.ObserveRedisBreaker(observe.BreakerOpen)
	}
}

func (o *observeHost) watchPolicies(e *policy.Engine) {
	o.metrics.SetActivePolicies(e.ActivePolicies)
}

func (o *observeHost) close() {
	o.cancel()
	<-o.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if o.webhook != nil {
		o.webhook.Close(ctx)
	}
	if o.tracing != nil {
		_ = o.tracing.Shutdown(ctx)
	}
	o.dash.Close()
	_ = o.metrics.Shutdown(ctx)
}
