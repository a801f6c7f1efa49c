// Package observe measures the host: an OpenTelemetry MeterProvider whose
// instruments are exported in the Prometheus text format on a registry of
// its own, rolling in-process windows (one and five minutes) that give
// per-route P50/P95/P99 to the dashboard and the alerts, and the
// implementations of the observer hooks the other packages define.
//
// Other packages never import OpenTelemetry: they define small observer
// interfaces (or Stats snapshots) and this package implements them. The
// request path records into pre-bound attribute sets and lock-free rings,
// so a measurement does not allocate.
package observe

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
)

// LatencyBuckets are the bucket boundaries (seconds) of the latency
// histograms (requests, database operations, model provider calls): from
// 10 µs to 30 s. Below 10 ms they follow the E12 series (1, 1.2, 1.5, 1.8,
// 2.2, 2.7, 3.3, 3.9, 4.7, 5.6, 6.8, 8.2 per decade), so adjacent bounds
// are at most 1.25 times apart and a quantile interpolated inside a bucket
// is off by less than 25% of its value; above, where a request waits on a
// database or a model, steps of 1.5 to 2. Written out, not computed, so
// that each bound prints as its decimal (le="1.2e-05").
var LatencyBuckets = []float64{
	1e-05, 1.2e-05, 1.5e-05, 1.8e-05, 2.2e-05, 2.7e-05, 3.3e-05, 3.9e-05, 4.7e-05, 5.6e-05, 6.8e-05, 8.2e-05,
	0.0001, 0.00012, 0.00015, 0.00018, 0.00022, 0.00027, 0.00033, 0.00039, 0.00047, 0.00056, 0.00068, 0.00082,
	0.001, 0.0012, 0.0015, 0.0018, 0.0022, 0.0027, 0.0033, 0.0039, 0.0047, 0.0056, 0.0068, 0.0082,
	0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
	1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30,
}

// HTTPDurationBuckets are the bucket boundaries (seconds) of
// http.server.request.duration.
var HTTPDurationBuckets = LatencyBuckets

// DecisionDurationBuckets are the bucket boundaries (seconds) of policy
// decision and policy call durations: a decision of the shipped policies
// takes about a microsecond, so the E12 series starts a decade lower,
// at 1 µs, and goes on as LatencyBuckets.
var DecisionDurationBuckets = append([]float64{
	1e-06, 1.2e-06, 1.5e-06, 1.8e-06, 2.2e-06, 2.7e-06, 3.3e-06, 3.9e-06, 4.7e-06, 5.6e-06, 6.8e-06, 8.2e-06,
}, LatencyBuckets...)

// QueryDurationBuckets are the bucket boundaries (seconds) of database
// operation durations.
var QueryDurationBuckets = LatencyBuckets

// The GenAI semantic conventions' advised bucket boundaries: tokens of a
// call, a call's duration (seconds) and its time to the first chunk.
var (
	GenAITokenBuckets      = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	GenAIDurationBuckets   = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	GenAIFirstChunkBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
)

// ProviderDurationBuckets are the bucket boundaries (seconds) of model
// provider call durations.
var ProviderDurationBuckets = LatencyBuckets

// TranslationStrategy is how OpenTelemetry names become Prometheus names,
// pinned so that a library upgrade cannot rename the metrics:
// http.server.request.duration (unit s) is exported as
// http_server_request_duration_seconds, counters end in _total.
var TranslationStrategy = otlptranslator.UnderscoreEscapingWithSuffixes

// meterName is the instrumentation scope of every metric.
const meterName = "github.com/wingman-app/wingate/host/observe"

// maxSeries bounds each family's label combinations built from request
// data (routes, statuses, query names); past it, new combinations are
// counted under the label value "other".
const maxSeries = 1000

// Options configure Metrics.
type Options struct {
	// Logger receives the package's few log lines. Nil discards them.
	Logger *slog.Logger
	// Now is the clock of the rolling windows. Nil means time.Now.
	Now func() time.Time
	// ServiceName and ServiceVersion describe the process in target_info.
	ServiceName    string
	ServiceVersion string
}

// Metrics is the process's measurement hub. Create it with New; it is safe
// for concurrent use. A nil *Metrics records nothing.
type Metrics struct {
	log *slog.Logger
	now func() time.Time
	// coarse is the wall clock in Unix nanoseconds, refreshed every
	// coarseTick, for the windows' slot of hook events (a second's
	// resolution is all they need, and a clock read costs more than the
	// rest of a hook); nil when the clock is injected.
	coarse   *atomic.Int64
	stop     chan struct{}
	stopOnce sync.Once
	started  time.Time
	reg      *prometheus.Registry
	provider *sdkmetric.MeterProvider
	meter    metric.Meter

	httpDur    *histFamily
	httpSeries seriesMap[httpKey, *httpSeries]
	routeWins  seriesMap[routeKey, *routeWindow]

	cacheReqs   metric.Int64ObservableCounter
	cacheSeries seriesMap[string, *cacheSeries]

	policyDecisions   metric.Int64ObservableCounter
	policyDur         *histFamily
	policySeries      seriesMap[policyKey, *policySeries]
	policyInstances   metric.Int64Counter
	policyQuarantines metric.Int64Counter
	policyKinds       seriesMap[string, *policyKind]
	policyFast        seriesMap[policyFastKey, *policySeries]
	policyLast        [8][4]atomic.Pointer[policySeries] // by kind and outcome

	queryDur    metric.Float64Histogram
	querySeries seriesMap[queryKey, []metric.RecordOption]

	llmTokens      metric.Int64Counter
	llmRequests    metric.Int64Counter
	llmDur         metric.Float64Histogram
	llmCost        metric.Float64Counter
	llmBaseline    metric.Float64Counter
	llmSaved       metric.Float64Counter
	llmTokensSaved metric.Int64Counter
	llmTurns       metric.Int64Counter
	// The GenAI semantic conventions' client metrics, beside wingate's.
	genTokens metric.Int64Histogram
	genDur    metric.Float64Histogram
	genTTFC   metric.Float64Histogram
	llmSeries seriesMap[llmKey, *llmCallSeries]
	llmTiers  seriesMap[string, *llmTier]

	pool atomic.Pointer[poolSource]
	// llmConns is the source of the model providers' connection counts.
	llmConns atomic.Pointer[func() map[string]int64]

	redisMu          sync.Mutex
	redisConfigured  bool
	redisState       string
	redisChanged     time.Time
	redisTransitions metric.Int64Counter

	activeMu sync.Mutex
	activeFn func() []ActivePolicy
}

// New builds the MeterProvider, its Prometheus exporter on a registry of
// its own (with the Go runtime and process collectors beside it) and the
// instruments.
func New(opts Options) (*Metrics, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "wingate"
	}
	m := &Metrics{log: opts.Logger, now: opts.Now, reg: prometheus.NewRegistry(), stop: make(chan struct{})}
	if opts.Now == nil {
		m.now = time.Now
		m.coarse = new(atomic.Int64)
		m.coarse.Store(time.Now().UnixNano())
		go m.tick()
	}
	m.started = m.now()
	// The Go collector exports the runtime/metrics series (go_gc_*,
	// go_memory_classes_*, go_sched_*) instead of the MemStats ones: those
	// have a gauge go_memstats_alloc_bytes beside a counter
	// go_memstats_alloc_bytes_total, two families of one name in
	// OpenMetrics, where a counter's family drops the _total.
	m.reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorMemStatsMetricsDisabled(),
			collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC, collectors.MetricsMemory, collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.httpDur = newHistFamily("http.server.request.duration", "s", "Duration of HTTP server requests.", HTTPDurationBuckets, m.started)
	m.policyDur = newHistFamily("wingate.policy.decision.duration", "s", "Duration of policy decisions.", DecisionDurationBuckets, m.started)
	exp, err := otelprom.New(
		otelprom.WithRegisterer(m.reg),
		otelprom.WithTranslationStrategy(TranslationStrategy),
		otelprom.WithoutScopeInfo(),
		otelprom.WithProducer(&histProducer{
			scope:    instrumentation.Scope{Name: meterName},
			families: []*histFamily{m.httpDur, m.policyDur},
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("observe: prometheus exporter: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", opts.ServiceName)}
	if opts.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", opts.ServiceVersion))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		res = resource.NewSchemaless(attrs...)
	}
	m.provider = sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithResource(res),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
	)
	m.meter = m.provider.Meter(meterName)
	if err := m.instruments(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) instruments() error {
	var errs [24]error
	mt := m.meter
	// The two per-request counters count in atomics of their pre-bound
	// series and are read at collection: a synchronous counter costs more
	// than the rest of the hook.
	m.cacheReqs, errs[1] = mt.Int64ObservableCounter("wingate.cache.requests",
		metric.WithUnit("{request}"), metric.WithDescription("Requests seen by the response cache, by route, the tier that served them (local, redis, origin, none) and result (hit, miss, stale, bypass)."),
		metric.WithInt64Callback(m.observeCacheCounts))
	m.policyDecisions, errs[2] = mt.Int64ObservableCounter("wingate.policy.decisions",
		metric.WithUnit("{decision}"), metric.WithDescription("Policy decisions by kind, policy, version and outcome (ok, fallback, timeout, trap)."),
		metric.WithInt64Callback(m.observePolicyCounts))
	m.queryDur, errs[4] = mt.Float64Histogram("db.client.operation.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of database queries by name."),
		metric.WithExplicitBucketBoundaries(QueryDurationBuckets...))
	m.llmTokens, errs[5] = mt.Int64Counter("wingate.llm.tokens",
		metric.WithUnit("{token}"), metric.WithDescription("Model tokens by tier, model and type (input, output, cache_read, cache_write)."))
	m.llmRequests, errs[6] = mt.Int64Counter("wingate.llm.requests",
		metric.WithUnit("{request}"), metric.WithDescription("Model calls by tier, model and outcome (ok, error)."))
	m.llmDur, errs[18] = mt.Float64Histogram("wingate.llm.call.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of model provider calls by tier, model and outcome (ok, error)."),
		metric.WithExplicitBucketBoundaries(ProviderDurationBuckets...))
	m.genTokens, errs[20] = mt.Int64Histogram("gen_ai.client.token.usage",
		metric.WithUnit("{token}"), metric.WithDescription("Tokens of each model call by type (input, output), as the GenAI semantic conventions define it."),
		metric.WithExplicitBucketBoundaries(GenAITokenBuckets...))
	m.genDur, errs[21] = mt.Float64Histogram("gen_ai.client.operation.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of each model call, as the GenAI semantic conventions define it (error.type set on a failed one)."),
		metric.WithExplicitBucketBoundaries(GenAIDurationBuckets...))
	m.genTTFC, errs[22] = mt.Float64Histogram("gen_ai.client.operation.time_to_first_chunk",
		metric.WithUnit("s"), metric.WithDescription("Time from a streamed model call's start to its first chunk, as the GenAI semantic conventions define it."),
		metric.WithExplicitBucketBoundaries(GenAIFirstChunkBuckets...))
	m.llmTurns, errs[15] = mt.Int64Counter("wingate.llm.turns",
		metric.WithUnit("{turn}"), metric.WithDescription("Messages answered, by the tier that answered."))
	m.llmCost, errs[7] = mt.Float64Counter("wingate.llm.cost",
		metric.WithUnit("usd"), metric.WithDescription("Model cost in US dollars by tier and model."))
	m.llmBaseline, errs[8] = mt.Float64Counter("wingate.llm.baseline.cost",
		metric.WithUnit("usd"), metric.WithDescription("What the answered messages would have cost on the baseline (premium tier, uncompressed context), in US dollars, by tier."))
	m.llmSaved, errs[9] = mt.Float64Counter("wingate.llm.cost.saved",
		metric.WithUnit("usd"), metric.WithDescription("Baseline cost minus cost, in US dollars, by tier."))
	m.llmTokensSaved, errs[10] = mt.Int64Counter("wingate.llm.context.tokens.saved",
		metric.WithUnit("{token}"), metric.WithDescription("Context tokens not sent thanks to compression, by tier."))
	m.redisTransitions, errs[11] = mt.Int64Counter("wingate.cache.redis.breaker.transitions",
		metric.WithUnit("{transition}"), metric.WithDescription("Redis circuit breaker state changes by new state."))
	_, errs[12] = mt.Int64ObservableGauge("wingate.cache.redis.up", metric.WithDescription("1 while the Redis tier is usable (breaker not open), 0 otherwise; absent without Redis."),
		metric.WithInt64Callback(m.observeRedisUp))
	_, errs[13] = mt.Int64ObservableGauge("wingate.cache.redis.breaker.state", metric.WithDescription("1 for the Redis circuit breaker's current state (closed, half_open, open)."),
		metric.WithInt64Callback(m.observeRedisState))
	errs[14] = m.poolInstruments()
	_, errs[19] = mt.Int64ObservableCounter("wingate.llm.connections.opened",
		metric.WithUnit("{connection}"), metric.WithDescription("TCP connections opened to each model provider by its connection pool."),
		metric.WithInt64Callback(m.observeLLMConns))
	m.policyInstances, errs[16] = mt.Int64Counter("wingate.policy.instance.events",
		metric.WithUnit("{instance}"), metric.WithDescription("Policy instances created and discarded (by reason: trap, timeout, recycle, memory, idle, close)."))
	_, errs[23] = mt.Int64ObservableGauge("wingate.policy.active",
		metric.WithDescription("1 for the policy version serving each kind, by kind, policy, version and exec_tier: compiled, or interpreted while a server started with an empty compilation cache compiles its policies in the background."),
		metric.WithInt64Callback(m.observeActivePolicies))
	m.policyQuarantines, errs[17] = mt.Int64Counter("wingate.policy.quarantines",
		metric.WithUnit("{version}"), metric.WithDescription("Policy versions put in quarantine after failing too many calls in a row."))
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("observe: instrument: %w", err)
		}
	}
	return nil
}

// Handler serves the Prometheus exposition of the registry (text format,
// or OpenMetrics when asked for).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
}

// Registry returns the Prometheus registry the metrics are exported on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// MeterProvider returns the OpenTelemetry MeterProvider, for packages that
// record instruments of their own.
func (m *Metrics) MeterProvider() metric.MeterProvider { return m.provider }

// Now returns the current time on the metrics' clock.
func (m *Metrics) Now() time.Time { return m.now() }

// RequestStart returns the start of a request: accepted, the time the
// HTTP server already read when the request arrived (so timing it costs
// no clock read), unless it is zero or the clock is injected, when it is
// Now.
func (m *Metrics) RequestStart(accepted time.Time) time.Time {
	if m.coarse == nil || accepted.IsZero() {
		return m.now()
	}
	return accepted
}

// coarseTick is how often the coarse clock is refreshed.
const coarseTick = 50 * time.Millisecond

func (m *Metrics) tick() {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.coarse.Store(now.UnixNano())
		}
	}
}

// eventTime is the time of a hook event for the windows: the injected
// clock, or the coarse clock.
func (m *Metrics) eventTime() time.Time {
	if m.coarse == nil {
		return m.now()
	}
	return time.Unix(0, m.coarse.Load())
}

// Shutdown stops the coarse clock and flushes and stops the
// MeterProvider.
func (m *Metrics) Shutdown(ctx context.Context) error {
	m.stopOnce.Do(func() { close(m.stop) })
	if err := m.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("observe: shutdown: %w", err)
	}
	return nil
}

// seriesMap is a copy-on-write map for pre-bound series: lookups are a
// lock-free map read; a new key takes a mutex and copies the map, which
// happens a bounded number of times (maxSeries).
type seriesMap[K comparable, V any] struct {
	p  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

func (s *seriesMap[K, V]) get(k K) (V, bool) {
	if p := s.p.Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// getOrCreate returns k's value, creating it with mk. When the map is full
// it returns the value of overflow (created if needed) instead.
func (s *seriesMap[K, V]) getOrCreate(k K, overflow func() K, mk func(K) V) V {
	if v, ok := s.get(k); ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := map[K]V{}
	if p := s.p.Load(); p != nil {
		old = *p
	}
	if v, ok := old[k]; ok {
		return v
	}
	if len(old) >= maxSeries && overflow != nil {
		k = overflow()
		if v, ok := old[k]; ok {
			return v
		}
	}
	next := make(map[K]V, len(old)+1)
	for kk, vv := range old {
		next[kk] = vv
	}
	v := mk(k)
	next[k] = v
	s.p.Store(&next)
	return v
}

// each calls f for every entry.
func (s *seriesMap[K, V]) each(f func(K, V)) {
	if p := s.p.Load(); p != nil {
		for k, v := range *p {
			f(k, v)
		}
	}
}

func recordOpt(kv ...attribute.KeyValue) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

func addOpt(kv ...attribute.KeyValue) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}
