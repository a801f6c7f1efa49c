package observe

import (
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// UnmatchedRoute is the route label of requests no route matched, so that
// probing random paths cannot grow the label set.
const UnmatchedRoute = "unmatched"

// otherLabel replaces label values past a family's series limit.
const otherLabel = "other"

type httpKey struct {
	method string
	route  string
	status int
}

type httpSeries struct {
	hist *atomicHist
	win  *routeWindow
}

type routeKey struct {
	method string
	route  string
}

// routeWindow is one method and route: its rolling window and, by
// status, its pre-bound series.
type routeWindow struct {
	m        *Metrics
	key      routeKey
	lat      *Latency
	byStatus [maxStatus]atomic.Pointer[httpSeries]
}

// maxStatus bounds the statuses looked up by index; others go through
// the map.
const maxStatus = 600

// RouteRecorder records the requests of one method and route template; get
// it once per route with Metrics.Route and keep it. Safe for concurrent
// use; Observe does not allocate once a status has been seen.
type RouteRecorder struct{ w *routeWindow }

// Route returns the recorder of method and route (a template, never a raw
// path).
func (m *Metrics) Route(method, route string) RouteRecorder {
	method = Method(method)
	if w, ok := m.routeWins.get(routeKey{method, route}); ok {
		return RouteRecorder{w}
	}
	return RouteRecorder{m.routeWindow(routeKey{method, strings.Clone(route)})}
}

// Observe records one request with status and duration d, ended at end.
func (r RouteRecorder) Observe(status int, d time.Duration, end time.Time) {
	w := r.w
	if status < 0 || status >= maxStatus {
		w.m.ObserveHTTP(w.key.method, w.key.route, status, d, end)
		return
	}
	s := w.byStatus[status].Load()
	if s == nil {
		s = w.m.newHTTPSeries(httpKey{w.key.method, w.key.route, status})
		w.byStatus[status].Store(s)
	}
	s.hist.record(d)
	s.win.lat.Record(end, d, status >= 500)
}

// Method returns the HTTP method as a metric label: one of the standard
// methods, or "_OTHER" (as the HTTP semantic conventions say), so the
// returned string is always a constant.
func Method(m string) string {
	switch m {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "PATCH":
		return "PATCH"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return "_OTHER"
}

// ObserveHTTP records one served request: method, route template (never
// the raw path), response status and duration, at time end. It does not
// allocate once the series exists; route must be a string the caller does
// not reuse (a route template is).
func (m *Metrics) ObserveHTTP(method, route string, status int, d time.Duration, end time.Time) {
	if m == nil {
		return
	}
	method = Method(method)
	s, ok := m.httpSeries.get(httpKey{method, route, status})
	if !ok {
		s = m.newHTTPSeries(httpKey{method, route, status})
	}
	s.hist.record(d)
	s.win.lat.Record(end, d, status >= 500)
}

func (m *Metrics) newHTTPSeries(k httpKey) *httpSeries {
	k.route = strings.Clone(k.route)
	return m.httpSeries.getOrCreate(k,
		func() httpKey { return httpKey{k.method, otherLabel, k.status} },
		func(k httpKey) *httpSeries {
			return &httpSeries{
				hist: m.httpDur.seriesFor(attribute.NewSet(
					attribute.String("http.request.method", k.method),
					attribute.String("http.route", k.route),
					attribute.Int("http.response.status_code", k.status),
				)),
				win: m.routeWindow(routeKey{k.method, k.route}),
			}
		})
}

func (m *Metrics) routeWindow(k routeKey) *routeWindow {
	return m.routeWins.getOrCreate(k,
		func() routeKey { return routeKey{k.method, otherLabel} },
		func(k routeKey) *routeWindow { return &routeWindow{m: m, key: k, lat: NewLatency()} })
}
