package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wingman-app/wingate/host/store"
)

type queryNameKey struct{}

// withQueryName names the queries run under ctx (e.g. "matches.candidates").
func withQueryName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, queryNameKey{}, name)
}

func queryName(ctx context.Context) string {
	if n, ok := ctx.Value(queryNameKey{}).(string); ok {
		return n
	}
	return "unnamed"
}

type traceStartKey struct{}

var (
	_ pgx.QueryTracer = (*tracer)(nil)
	_ pgx.BatchTracer = (*tracer)(nil)
)

// tracer is the pgx QueryTracer that reports each named query's duration
// (and each batch's, as one query) to the observer.
type tracer struct {
	obs store.QueryObserver
}

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	if t.obs == nil {
		return ctx
	}
	return context.WithValue(ctx, traceStartKey{}, time.Now())
}

func (t *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	t.end(ctx, d.Err)
}

func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if t.obs == nil {
		return ctx
	}
	return context.WithValue(ctx, traceStartKey{}, time.Now())
}

func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *tracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchEndData) {
	t.end(ctx, d.Err)
}

func (t *tracer) end(ctx context.Context, err error) {
	if t.obs == nil {
		return
	}
	start, ok := ctx.Value(traceStartKey{}).(time.Time)
	if !ok {
		return
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	t.obs.ObserveQuery(queryName(ctx), time.Since(start), store.QueryOutcome(err))
}
