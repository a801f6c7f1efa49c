package server

import (
	"bufio"
	"context"
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/wingman-app/wingate/host/observe"
)

// Observability endpoints: /metrics (Prometheus text), /dashboard (the
// page, its assets, its event stream and a JSON state), /api/alerts.
const (
	pathMetrics         = "/metrics"
	pathDashboard       = "/dashboard"
	pathDashboardAssets = "/dashboard/assets/:name"
	pathDashboardEvents = "/dashboard/events"
	pathDashboardState  = "/dashboard/state"
	pathAlerts          = "/api/alerts"
)

// observeRoutes installs the HTTP metrics middleware (first, so that it
// times everything after it) and the observability endpoints.
func (s *Server) observeRoutes() {
	if m := s.deps.Metrics; m != nil {
		s.app.Use(s.metricsMiddleware)
		s.app.Get(pathMetrics, adaptor.HTTPHandler(m.Handler()))
	}
	if d := s.deps.Dashboard; d != nil {
		s.app.Get(pathDashboard, s.dashboardAsset)
		s.app.Get(pathDashboardAssets, s.dashboardAsset)
		s.app.Get(pathDashboardEvents, s.dashboardEvents)
		s.app.Get(pathDashboardState, func(c *fiber.Ctx) error { return c.JSON(d.State()) })
	}
	if a := s.deps.Alerts; a != nil {
		s.registerAPI(fiber.MethodGet, pathAlerts, func(c *fiber.Ctx) error { return c.JSON(a.List()) })
	}
}

// metricsMiddleware records every request's method, route template,
// status and duration. The route is read after the handler ran, when
// Fiber has settled the matched route; requests no route matched share
// one label. Errors are rendered here, so the recorded status is the one
// the client gets.
func (s *Server) metricsMiddleware(c *fiber.Ctx) error {
	if c.Context().UserValue(cacheRefreshKey{}) != nil {
		return c.Next() // a background refresh, not a client request
	}
	if c.Path() == pathDashboardEvents {
		return c.Next() // a stream: its handler returns at once, it lasts for hours
	}
	m := s.deps.Metrics
	own := c.Route()
	var span *observe.RequestSpan
	if t := s.deps.Tracing; t != nil {
		var ctx context.Context
		ctx, span = t.StartRequest(c.UserContext(), c.Method(), c.Path(), func(k string) string { return c.Get(k) })
		c.SetUserContext(ctx)
	}
	start := m.RequestStart(c.Context().Time())
	err := c.Next()
	r := c.Route()
	unmatched := r == own || isNoRoute(err)
	if err != nil {
		if herr := s.handleError(c, err); herr != nil {
			c.Status(fiber.StatusInternalServerError)
		}
	}
	end := m.Now()
	status := c.Response().StatusCode()
	method, route := r.Method, r.Path
	var rec observe.RouteRecorder
	if unmatched {
		method, route = c.Method(), observe.UnmatchedRoute
		rec = m.Route(method, route)
	} else if v, ok := s.routeRecorders.Load(r); ok {
		rec = v.(observe.RouteRecorder)
	} else {
		rec = m.Route(method, route)
		s.routeRecorders.Store(r, rec)
	}
	rec.Observe(status, end.Sub(start), end)
	if span != nil {
		span.End(method, route, status)
	}
	return nil
}

// isNoRoute reports the errors Fiber returns when no route matched (a
// group's middleware may have run, so the route alone does not tell).
func isNoRoute(err error) bool {
	if err == nil {
		return false // before errors.As, whose target would escape (one allocation per request)
	}
	var fe *fiber.Error
	if !errors.As(err, &fe) {
		return false
	}
	return fe == fiber.ErrMethodNotAllowed || (fe.Code == fiber.StatusNotFound && strings.HasPrefix(fe.Message, "Cannot "))
}

func (s *Server) dashboardAsset(c *fiber.Ctx) error {
	body, ct, ok := s.deps.Dashboard.Asset(c.Params("name"))
	if !ok {
		return notFound("no such dashboard asset")
	}
	c.Set(fiber.HeaderContentType, ct)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(body)
}

// dashboardEvents streams the dashboard's state as Server-Sent Events
// until the client leaves, the server shuts down or Config.StreamTimeout
// passes (the browser then reconnects).
func (s *Server) dashboardEvents(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	d, lifetime := s.deps.Dashboard, s.cfg.StreamTimeout
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithTimeout(context.Background(), lifetime)
		defer cancel()
		_ = d.Stream(ctx, w)
	})
	return nil
}
