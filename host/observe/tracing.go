package observe

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing sends a span per HTTP request to an OTLP (HTTP) collector. It
// is safe for concurrent use.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// StartTracing starts tracing when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (the exporter reads the
// standard OTEL_EXPORTER_OTLP_* variables for the rest); otherwise it
// returns nil and no error.
func StartTracing(ctx context.Context, getenv func(string) string, log *slog.Logger) (*Tracing, error) {
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe: otlp trace exporter: %w", err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "wingate"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		res = resource.NewSchemaless(attribute.String("service.name", name))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	if log != nil {
		log.Info("tracing to OTLP", "endpoint", getenv("OTEL_EXPORTER_OTLP_ENDPOINT")+getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	}
	return &Tracing{
		tp:     tp,
		tracer: tp.Tracer(meterName),
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// RequestSpan is the span of one HTTP request.
type RequestSpan struct {
	span trace.Span
}

// headerCarrier reads incoming headers for the propagator.
type headerCarrier func(string) string

func (h headerCarrier) Get(key string) string { return h(key) }
func (h headerCarrier) Set(string, string)    {}
func (h headerCarrier) Keys() []string        { return nil }

// StartRequest starts the span of a request, continuing the trace of its
// traceparent header if any; header reads one request header.
func (t *Tracing) StartRequest(ctx context.Context, method, path string, header func(string) string) (context.Context, *RequestSpan) {
	ctx = t.prop.Extract(ctx, headerCarrier(header))
	ctx, span := t.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", Method(method)), attribute.String("url.path", path)))
	return ctx, &RequestSpan{span: span}
}

// End names the span after the route template and ends it with the
// response status.
func (s *RequestSpan) End(method, route string, status int) {
	s.span.SetName(Method(method) + " " + route)
	s.span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
	if status >= 500 {
		s.span.SetStatus(codes.Error, "")
	}
	s.span.End()
}

// Shutdown flushes the spans and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("observe: tracing shutdown: %w", err)
	}
	return nil
}
