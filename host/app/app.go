// Package app assembles the Wingate application from one Config: the
// observability (metrics, alerts, dashboard, traces), the store, the token
// authority, the policy runtime under its rollout manager, the AI coach,
// the response cache and the HTTP server over them. It owns the process's
// lifecycle in one place: Build, Start, Ready, Drain, Stop (Run does all
// of them for `wingate serve`).
//
// The configuration is layered (Load): Defaults, a JSON file, the
// environment, then flags. Defaults alone give a self-contained
// application — in-memory demo store, in-process cache, simulated models —
// which is how tests, benchmarks, drills and the load tool build the same
// server `wingate serve` runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/server"
)

// Options are the process's surroundings, not its configuration.
type Options struct {
	// Logger receives the application's logs; nil: text logs at
	// cfg.LogLevel on standard error.
	Logger *slog.Logger
	// Getenv reads OpenTelemetry's own variables
	// (OTEL_EXPORTER_OTLP_ENDPOINT, ...); nil: os.Getenv.
	Getenv func(string) string
}

// App is one assembled application: the HTTP server and every service it
// owns, closed in reverse order of creation by Stop.
type App struct {
	cfg      Config
	log      *slog.Logger
	srv      *server.Server
	decider  policy.Decider // every kind of decision, the cache's included
	engine   *policy.Engine // the rollout manager's engine, under decider
	runtime  *policy.Runtime
	tiers    func() string // each kind's tier, for the log
	deps     server.Deps   // what srv was built from (benchmarks vary one)
	closers  []func()
	ready    []server.ReadyCheck
	draining atomic.Bool
	serving  chan error // Serve's result, once Start has run
	addr     string
	opsAddr  string
	stopped  atomic.Bool
	// acceptFailures counts accepts that failed for lack of descriptors
	// (listen.go).
	acceptFailures atomic.Int64
	acceptEpisode  atomic.Bool
}

// NewLogger returns text logs to w at level (debug, info, warn, error).
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: log level %q: %w", ErrUsage, level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// errDraining fails /readyz while the application drains.
var errDraining = errors.New("draining: shutting down")

// Build assembles the services cfg names. Nothing listens yet: Start
// serves, or tests drive Handler directly. A failed Build closes what it
// had started.
func Build(ctx context.Context, cfg Config, opt Options) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opt.Logger
	if log == nil {
		var err error
		if log, err = NewLogger(os.Stderr, cfg.LogLevel); err != nil {
			return nil, err
		}
	}
	getenv := opt.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	a := &App{cfg: cfg, log: log}
	if err := a.build(ctx, getenv); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *App) build(ctx context.Context, getenv func(string) string) error {
	cfg, log := a.cfg, a.log
	deps := server.Deps{Logger: log}
	obs, err := startObserve(ctx, cfg.AlertRules, cfg.AlertWebhook, getenv, log)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, obs.close)
	deps.Metrics, deps.Alerts, deps.Dashboard, deps.Tracing = obs.metrics, obs.alerts, obs.dash, obs.tracing
	// The policies load (seconds of CPU when they are not compiled yet)
	// while the store opens; neither needs the other.
	type loaded struct {
		pols *rolloutHost
		err  error
	}
	rollout := make(chan loaded, 1)
	go func() {
		pols, err := startRollout(ctx, cfg, obs.metrics.PolicyObserver(), log)
		rollout <- loaded{pols, err}
	}()
	awaitRollout := func() (*rolloutHost, error) {
		r := <-rollout
		if r.err == nil {
			a.closers = append(a.closers, r.pols.close)
		}
		return r.pols, r.err
	}
	st, storeReady, closeStore, err := startStore(ctx, cfg, obs.metrics, log)
	if err != nil {
		_, _ = awaitRollout()
		return err
	}
	a.closers = append(a.closers, closeStore)
	obs.watchStore(st)
	deps.Store = st
	if deps.Auth, err = startAuth(cfg.JWTSecret, cfg.TokenMaxLifetime, log); err != nil {
		_, _ = awaitRollout()
		return err
	}
	pols, err := awaitRollout()
	if err != nil {
		return err
	}
	deps.Policies, a.decider, a.engine, a.runtime, a.tiers = pols.decider, pols.decider, pols.engine, pols.rt, pols.tiers
	deps.Rollout, deps.AdminToken = pols.mgr, cfg.AdminToken
	obs.watchPolicies(pols.engine)
	var pools map[string]*llm.Pool
	if deps.Chat, pools, err = startChat(cfg, deps.Store, pols.decider, obs.metrics.ChatObserver(), log); err != nil {
		return err
	}
	obs.metrics.WatchLLMConnections(func() map[string]int64 {
		out := make(map[string]int64, len(pools))
		for name, p := range pools {
			out[name] = p.Opened()
		}
		return out
	})
	cc, closeCache, err := startCache(cfg, obs.metrics.CacheObserver(), log)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, closeCache)
	// The keys' ledger is flushed before Redis and the store close.
	var closeKeys func()
	if deps.Keys, closeKeys, err = startKeys(cfg, st, log); err != nil {
		return err
	}
	a.closers = append(a.closers, closeKeys)
	obs.watchCache(cc, cfg.RedisURL != "")
	deps.Cache = cc
	a.ready = []server.ReadyCheck{
		{Name: "lifecycle", Check: a.checkDraining, Required: true},
		storeReady,
		pols.readyCheck(),
	}
	deps.Ready = a.ready
	a.deps = deps
	a.srv = server.New(a.serverConfig(), deps)
	if err := a.watchConns(obs.metrics); err != nil {
		return err
	}
	if pols.compile != nil {
		pols.compile()
	}
	return nil
}

func (a *App) checkDraining(context.Context) error {
	if a.draining.Load() {
		return errDraining
	}
	return nil
}

// Config returns the configuration the application was built from.
func (a *App) Config() Config { return a.cfg }

// Server returns the HTTP server (for its Fiber app in tests).
func (a *App) Server() *server.Server { return a.srv }

// Handler returns the request handler Start serves: benchmarks and
// allocation tests drive it with a reused fasthttp.RequestCtx.
func (a *App) Handler() fasthttp.RequestHandler { return a.srv.Handler() }

// Start serves in the background: the public listener on ln (nil: listen
// on cfg.Addr) and the operators' listener (OpsAddrOf; when ln is handed
// in and cfg.OpsAddr is empty, a free loopback port). Addr and OpsAddr
// then report the addresses.
func (a *App) Start(ln net.Listener) error {
	if a.serving != nil {
		return errors.New("app: already started")
	}
	opsAddr, opsOn, err := OpsAddrOf(a.cfg)
	if err != nil {
		return err
	}
	if ln != nil && a.cfg.OpsAddr == "" {
		opsAddr = "127.0.0.1:0"
	}
	var ops net.Listener
	if opsOn {
		if ops, err = net.Listen("tcp", opsAddr); err != nil {
			return fmt.Errorf("listen (operators): %w", err)
		}
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", a.cfg.Addr); err != nil {
			if ops != nil {
				ops.Close()
			}
			return fmt.Errorf("listen: %w", err)
		}
		setBacklog(ln, int(a.cfg.ListenBacklog))
	}
	a.serve(ln, ops)
	return nil
}

// serve serves the public listener ln and the operators' listener ops
// (nil: none) in the background.
func (a *App) serve(ln, ops net.Listener) {
	// Both listeners back off when descriptors run out (listen.go)
	// instead of failing, which would end the server.
	ln = &backoffListener{Listener: ln, log: a.log, errs: &a.acceptFailures, episode: &a.acceptEpisode, sleep: time.Sleep}
	if ops != nil {
		ops = &backoffListener{Listener: ops, log: a.log, errs: &a.acceptFailures, episode: &a.acceptEpisode, sleep: time.Sleep}
	}
	a.addr = ln.Addr().String()
	a.serving = make(chan error, 2)
	go func() { a.serving <- a.srv.Serve(ln) }()
	if ops != nil {
		a.opsAddr = ops.Addr().String()
		go func() { a.serving <- a.srv.ServeOps(ops) }()
		a.log.Info("wingate listening", "addr", a.addr, "url", siteURL(a.addr, "/"), "serves", "API, /healthz, /readyz",
			"ops_addr", a.opsAddr, "ops_serves", "/metrics, /dashboard, /admin, /readyz details", "dashboard", siteURL(a.opsAddr, "/dashboard"))
		return
	}
	a.log.Info("wingate listening", "addr", a.addr, "url", siteURL(a.addr, "/"), "serves", "API, /healthz, /readyz", "ops_addr", OpsOff)
}

// Addr is the public listener's address ("" before Start).
func (a *App) Addr() string { return a.addr }

// OpsAddr is the operators' listener's address ("" before Start, or when
// it is off).
func (a *App) OpsAddr() string { return a.opsAddr }

// Ready reports whether the application can serve: nil when every required
// check of /readyz passes (the store reachable and migrated, not
// draining), else the first failure.
func (a *App) Ready(ctx context.Context) error {
	for _, rc := range a.ready {
		if !rc.Required {
			continue
		}
		if err := rc.Check(ctx); err != nil {
			return fmt.Errorf("%s: %w", rc.Name, err)
		}
	}
	return nil
}

// WaitReady polls Ready until it passes or ctx ends.
func (a *App) WaitReady(ctx context.Context) error {
	for {
		err := a.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (%w)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AwaitPoliciesCompiled waits until every policy a tiered start served
// interpreted runs compiled (or failed to compile, and stays
// interpreted), or ctx ends. It returns at once when none did.
func (a *App) AwaitPoliciesCompiled(ctx context.Context) error {
	return a.runtime.AwaitCompiled(ctx)
}

// Drain makes /readyz answer 503 from now on while requests are still
// served, so that a load balancer stops sending new ones.
func (a *App) Drain() { a.draining.Store(true) }

// Stop drains, stops accepting connections, waits for requests in flight
// until ctx ends, then closes every service. It is safe to call more than
// once; only the first call acts.
func (a *App) Stop(ctx context.Context) error {
	if !a.stopped.CompareAndSwap(false, true) {
		return nil
	}
	a.Drain()
	var err error
	if a.serving != nil {
		if e := a.srv.Shutdown(ctx); e != nil && !errors.Is(e, context.Canceled) {
			err = fmt.Errorf("shutdown: %w", e)
		}
	}
	a.close()
	return err
}

func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Run is `wingate serve`: listen on cfg.Addr and the operators' address
// (OpsAddrOf), build, serve until ctx ends
// (or serving fails), then drain for cfg.DrainDelay and stop within
// cfg.ShutdownTimeout.
func Run(ctx context.Context, cfg Config, opt Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	opsAddr, opsOn, err := OpsAddrOf(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	setBacklog(ln, int(cfg.ListenBacklog))
	var ops net.Listener
	if opsOn {
		if ops, err = net.Listen("tcp", opsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen (operators): %w", err)
		}
	}
	a, err := Build(ctx, cfg, opt)
	if err != nil {
		ln.Close()
		if ops != nil {
			ops.Close()
		}
		return err
	}
	a.serve(ln, ops)
	// Loading the policies allocated several times the heap it keeps
	// (decoding and compiling the modules): the garbage is collected but
	// stays resident until the scavenger returns it, bit by bit. Return
	// it now, once, beside the first requests rather than before them.
	go debug.FreeOSMemory()
	// A tiered start's policies run interpreted until compiled in the
	// background; moving to the compiled code frees the interpreter's
	// code (some 100 MiB of heap per module) and the compilation's
	// garbage. Return those too, once.
	if a.runtime.Compiling() {
		a.log.Info("serving before the policies are compiled", "tiers", a.tiers())
		go func() {
			if a.AwaitPoliciesCompiled(ctx) == nil && ctx.Err() == nil {
				debug.FreeOSMemory()
				a.log.Info("policies compiled", "tiers", a.tiers())
			}
		}()
	}
	select {
	case err := <-a.serving:
		// One listener failed: stop the other and every service.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = a.Stop(sctx)
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "drain_delay", cfg.DrainDelay)
	a.Drain()
	if cfg.DrainDelay > 0 {
		time.Sleep(cfg.DrainDelay)
	}
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = Defaults().ShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return a.Stop(sctx)
}
