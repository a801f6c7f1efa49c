// Package server is the HTTP face of Wingate: the only package that knows
// Fiber. It maps requests onto the host's services (store, cache, chat,
// policies, observability) and their errors onto JSON responses.
package server

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/dashboard"
	"github.com/wingman-app/wingate/host/observe"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/store"
)

// Config holds the server's own settings.
type Config struct {
	// BodyLimit caps request bodies (bytes); larger ones get 413.
	BodyLimit int
	// ReadTimeout and WriteTimeout bound one request's I/O.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// AdminUploadLimit caps a policy module uploaded to /admin (bytes;
	// zero: DefaultAdminUploadLimit); larger uploads get 413.
	AdminUploadLimit int
}

// DefaultConfig returns the settings used when nothing is configured.
func DefaultConfig() Config {
	return Config{BodyLimit: 1 << 20, ReadTimeout: 15 * time.Second, WriteTimeout: 60 * time.Second}
}

// ReadyCheck is one dependency checked by /readyz.
type ReadyCheck struct {
	Name string
	// Check returns nil when the dependency can serve. Required checks
	// fail /readyz; the others are only reported.
	Check    func(ctx context.Context) error
	Required bool
}

// Deps are the services the server exposes. Nil services leave their
// endpoints unregistered.
type Deps struct {
	Logger *slog.Logger
	Ready  []ReadyCheck
	// Store backs the Wingman API (/api/challenges, /api/users/...).
	Store store.Store
	// Auth verifies API bearer tokens (requireAuth).
	Auth TokenVerifier
	// Cache puts the response cache in the chain of every /api route
	// declared with Cache in apiRoutes (routes.go, cache_mw.go), asking
	// CachePolicy, or Policies when it is nil.
	Cache       *cache.Cache
	CachePolicy policy.Decider
	// Policies serves every kind of policy decision (the policy Engine).
	Policies policy.Decider
	// Chat serves the AI coach (/api/chat/...) and the OpenAI-compatible
	// gateway (/v1/chat/completions), both behind requireAuth.
	Chat *chat.Service
	// Metrics times every request and serves /metrics; Dashboard serves
	// /dashboard and its event stream; Alerts serves /api/alerts
	// (observe.go).
	Metrics   *observe.Metrics
	Dashboard *dashboard.Dashboard
	Alerts    *alert.Manager
	// Rollout serves the admin API (/admin, admin.go), guarded by
	// AdminToken; an empty token disables it (403).
	Rollout    *rollout.Manager
	AdminToken string
	// Tracing, when set with Metrics, gives every request a span.
	Tracing *observe.Tracing
}

// Server is the HTTP server. Create it with New; it is safe for concurrent use.
type Server struct {
	app  *fiber.App
	cfg  Config
	deps Deps
	log  *slog.Logger
	// handler is the application's request handler, for internal
	// sub-requests (background cache refreshes, purge keys); outer is
	// the one served, which answers unknown methods first.
	handler, outer fasthttp.RequestHandler
	// routeRecorders maps a matched *fiber.Route to its metrics recorder
	// (observe.go).
	routeRecorders sync.Map
}

// New builds the server and registers its routes.
func New(cfg Config, deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger}
	bodyLimit := cfg.BodyLimit
	if deps.Rollout != nil {
		bodyLimit = max(bodyLimit, s.uploadLimit()+1<<20) // multipart overhead
	}
	s.app = fiber.New(fiber.Config{
		BodyLimit:             bodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		DisableStartupMessage: true,
		ErrorHandler:          s.handleError,
		// Multipart bodies (admin uploads) are parsed by their handler,
		// whose errors are JSON without the parser's text.
		DisablePreParseMultipartForm: true,
		RequestMethods:               requestMethods,
	})
	if bodyLimit > cfg.BodyLimit {
		s.app.Use(s.limitBody)
	}
	if s.deps.CachePolicy == nil {
		s.deps.CachePolicy = s.deps.Policies
	}
	s.routes()
	s.handler = s.app.Handler() // also builds the route tree once
	s.outer = guardMethods(s.handler)
	s.app.Server().Handler = s.outer
	return s
}

// App returns the Fiber application, for tests (app.Test) and adapters.
func (s *Server) App() *fiber.App { return s.app }

// Handler is the request handler Serve serves: benchmarks and tests drive
// it with a reused fasthttp.RequestCtx.
func (s *Server) Handler() fasthttp.RequestHandler { return s.outer }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops accepting connections and waits for requests in flight,
// up to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.deps.Dashboard != nil {
		s.deps.Dashboard.Close() // open event streams would hold shutdown up
	}
	return s.app.ShutdownWithContext(ctx)
}

func (s *Server) routes() {
	s.observeRoutes()
	s.app.Get("/", s.landing)
	s.app.Get("/healthz", s.healthz)
	s.app.Get("/readyz", s.readyz)
	if s.deps.Store != nil {
		s.storeRoutes()
	}
	if s.deps.Chat != nil {
		s.chatRoutes()
	}
	if s.deps.Rollout != nil {
		s.adminRoutes()
	}
}

func (s *Server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

// readyz answers {"status": "ok"} or 503 {"status": "unavailable"}:
// whether the server can serve, never why. A failing required check is
// logged with its error at warn level, an optional one at debug level.
func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	ready := true
	for _, rc := range s.deps.Ready {
		if err := rc.Check(ctx); err != nil {
			if rc.Required {
				ready = false
				s.log.Warn("readyz: check failed", "check", rc.Name, "err", err)
			} else {
				s.log.Debug("readyz: optional check failed", "check", rc.Name, "err", err)
			}
		}
	}
	if !ready {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable"})
	}
	return c.JSON(fiber.Map{"status": "ok"})
}
