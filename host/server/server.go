// Package server is the HTTP face of Wingate: the only package that knows
// Fiber. It maps requests onto the host's services (store, cache, chat,
// policies, observability) and their errors onto JSON responses.
package server

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/dashboard"
	"github.com/wingman-app/wingate/host/keys"
	"github.com/wingman-app/wingate/host/observe"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/store"
)

// Config holds the server's own settings (limits.go applies them).
type Config struct {
	// BodyLimit caps request bodies (bytes) on every route but the chat
	// routes and the admin upload; larger ones get 413 before they are
	// read.
	BodyLimit int
	// ChatBodyLimit caps the body of a chat message or completion sent
	// with a valid API token (bytes; without one BodyLimit applies).
	ChatBodyLimit int
	// ReadTimeout bounds the reading of one request (header and body,
	// from its first byte; a new connection's from its accept);
	// WriteTimeout the writing of one answer. IdleTimeout closes a
	// keep-alive connection that sends no new request.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// StreamTimeout is the longest a server-sent event stream lasts
	// (WriteTimeout does not bound it).
	StreamTimeout time.Duration
	// MaxConns caps the connections served at once (zero: fasthttp's
	// 262,144); MaxConnsPerIP those from one client address (zero: no
	// cap). A connection over either is answered 503 (429 per address)
	// and closed without its request being read.
	MaxConns      int
	MaxConnsPerIP int
	// AdminUploadLimit caps a policy module uploaded to /admin by an
	// operator with the admin token (bytes; zero:
	// DefaultAdminUploadLimit); larger uploads get 413.
	AdminUploadLimit int
}

// DefaultConfig returns the settings used when nothing is configured.
func DefaultConfig() Config {
	return Config{BodyLimit: DefaultBodyLimit, ChatBodyLimit: DefaultChatBodyLimit,
		ReadTimeout: 15 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: DefaultIdleTimeout, StreamTimeout: DefaultStreamTimeout}
}

// ReadyCheck is one dependency checked by /readyz.
type ReadyCheck struct {
	Name string
	// Check returns nil when the dependency can serve. Required checks
	// fail /readyz; the others are only reported.
	Check    func(ctx context.Context) error
	Required bool
	// Detail, when set, describes the dependency's state beside the
	// result on the operators' listener (the policies: each kind's tier).
	Detail func() string
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
	// Keys, when set, lets operator-issued virtual keys call the
	// gateway (/v1) within their limits, and serves /admin/keys
	// (api_keys.go).
	Keys *keys.Service
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
	// admin limits failed admin attempts per client (admin_guard.go).
	admin adminGuard
	// refusedConns counts connections refused over MaxConns (connlimit.go).
	refusedConns atomic.Int64
}

// New builds the server and registers its routes.
func New(cfg Config, deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger}
	s.admin.now, s.admin.buckets = time.Now, map[string]*failBucket{}
	if s.cfg.StreamTimeout <= 0 {
		s.cfg.StreamTimeout = DefaultStreamTimeout
	}
	if s.cfg.ChatBodyLimit <= 0 {
		s.cfg.ChatBodyLimit = max(cfg.BodyLimit, DefaultChatBodyLimit)
	}
	s.app = fiber.New(fiber.Config{
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		Concurrency:           fasthttpConcurrency(cfg.MaxConns),
		DisableStartupMessage: true,
		ErrorHandler:          s.handleError,
		// Multipart bodies (admin uploads) are parsed by their handler,
		// whose errors are JSON without the parser's text.
		DisablePreParseMultipartForm: true,
		RequestMethods:               requestMethods,
	})
	s.applyConnLimits()
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

// Serve accepts the public's connections on ln until Shutdown: the
// operators' paths are not found there (listeners.go).
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(roleListener{Listener: s.capped(ln), role: rolePublic})
}

// capped puts ln behind the connection cap (connlimit.go).
func (s *Server) capped(ln net.Listener) net.Listener {
	return newCapListener(ln, s.cfg.MaxConns, acceptLoops(), &s.refusedConns)
}

// RefusedConns returns how many connections were refused over MaxConns.
func (s *Server) RefusedConns() int64 { return s.refusedConns.Load() }

// fasthttpConcurrency is fasthttp's own cap for a MaxConns: above it, so
// that capListener refuses first (zero: fasthttp's default).
func fasthttpConcurrency(maxConns int) int {
	if maxConns <= 0 {
		return 0
	}
	return maxConns + concurrencySlack
}

// Shutdown stops accepting connections and waits for requests in flight,
// up to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.deps.Dashboard != nil {
		s.deps.Dashboard.Close() // open event streams would hold shutdown up
	}
	return s.app.ShutdownWithContext(ctx)
}

func (s *Server) routes() {
	s.app.Use(s.listenerGate)
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
