package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/wingman-app/wingate/host/server"
)

func init() {
	commands["serve"] = command{summary: "run the API host", run: runServe}
}

// serveConfig is everything serve reads from flags and the environment.
// Each field is a flag whose default comes from the environment variable
// named in DESIGN.md, so either way of configuring works.
type serveConfig struct {
	Addr        string
	DatabaseURL string
	RedisURL    string
	PolicyDir   string
	AdminToken  string
	// PolicyPubKey (base64 ed25519 public key, or a file holding it) makes
	// signed policy versions mandatory.
	PolicyPubKey string
	JWTSecret    string
	LLMProvider  string
	LogLevel     string
	// AlertRules is the alert rules file (empty: the shipped rules);
	// AlertHook the URL alert changes are POSTed to.
	AlertRules string
	AlertHook  string
	// Cache sizes in bytes: the in-process tier and the largest response
	// stored.
	CacheLocalBytes    int64
	CacheMaxEntryBytes int64
}

func parseServeFlags(args []string, std Stdio, getenv func(string) string) (serveConfig, error) {
	var c serveConfig
	fs := newFlagSet("serve", std)
	fs.StringVar(&c.Addr, "addr", envOr(getenv, "WINGATE_ADDR", "127.0.0.1:8080"), "listen address (WINGATE_ADDR)")
	fs.StringVar(&c.DatabaseURL, "database-url", getenv("DATABASE_URL"), "PostgreSQL URL; empty: in-memory demo store (DATABASE_URL)")
	fs.StringVar(&c.RedisURL, "redis-url", getenv("REDIS_URL"), "Redis URL; empty: in-process cache only (REDIS_URL)")
	fs.StringVar(&c.PolicyDir, "policy-dir", envOr(getenv, "WINGATE_POLICY_DIR", "./policies"), "policy directory (WINGATE_POLICY_DIR)")
	fs.StringVar(&c.AdminToken, "admin-token", getenv("WINGATE_ADMIN_TOKEN"), "bearer token for /admin; empty disables it (WINGATE_ADMIN_TOKEN)")
	fs.StringVar(&c.PolicyPubKey, "policy-pubkey", getenv("WINGATE_POLICY_PUBKEY"), "ed25519 public key (base64 or file) required to sign policy versions; empty: unsigned accepted (WINGATE_POLICY_PUBKEY)")
	fs.StringVar(&c.JWTSecret, "jwt-secret", getenv("WINGATE_JWT_SECRET"), "HS256 key for API tokens; empty: random per process (WINGATE_JWT_SECRET)")
	fs.StringVar(&c.LLMProvider, "llm-provider", envOr(getenv, "WINGATE_LLM_PROVIDER", "simulated"), "simulated, anthropic or openai (WINGATE_LLM_PROVIDER)")
	fs.StringVar(&c.AlertRules, "alert-rules", getenv("WINGATE_ALERT_RULES"), "alert rules file; empty: the shipped rules (WINGATE_ALERT_RULES)")
	fs.StringVar(&c.AlertHook, "alert-webhook", getenv("WINGATE_ALERT_WEBHOOK"), "URL alert changes are POSTed to as JSON; empty: log and dashboard only (WINGATE_ALERT_WEBHOOK)")
	fs.StringVar(&c.LogLevel, "log-level", envOr(getenv, "WINGATE_LOG_LEVEL", "info"), "debug, info, warn or error (WINGATE_LOG_LEVEL)")
	fs.Int64Var(&c.CacheLocalBytes, "cache-local-bytes", envInt64(getenv, "WINGATE_CACHE_LOCAL_BYTES", 64<<20), "size of the in-process cache tier in bytes (WINGATE_CACHE_LOCAL_BYTES)")
	fs.Int64Var(&c.CacheMaxEntryBytes, "cache-max-entry-bytes", envInt64(getenv, "WINGATE_CACHE_MAX_ENTRY_BYTES", 256<<10), "largest response body the cache stores, in bytes (WINGATE_CACHE_MAX_ENTRY_BYTES)")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	return c, nil
}

func newLogger(w *os.File, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: log level %q: %w", errUsage, level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runServe(ctx context.Context, args []string, std Stdio) error {
	cfg, err := parseServeFlags(args, std, os.Getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(os.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	h, err := buildHost(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer h.Close()
	log.Info("wingate listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// hostProcess is one assembled server process: the HTTP server and every
// service it owns, closed in reverse order of creation.
type hostProcess struct {
	srv     *server.Server
	closers []func()
}

func (h *hostProcess) Close() {
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i]()
	}
}

// buildHost assembles the services named by cfg.
func buildHost(ctx context.Context, cfg serveConfig, log *slog.Logger) (*hostProcess, error) {
	h := &hostProcess{}
	deps := server.Deps{Logger: log}
	obs, err := startObserve(ctx, cfg.AlertRules, cfg.AlertHook, os.Getenv, log)
	if err != nil {
		return nil, err
	}
	h.closers = append(h.closers, obs.close)
	deps.Metrics, deps.Alerts, deps.Dashboard, deps.Tracing = obs.metrics, obs.alerts, obs.dash, obs.tracing
	st, storeReady, closeStore, err := startStore(ctx, cfg.DatabaseURL, obs.metrics, log)
	if err != nil {
		h.Close()
		return nil, err
	}
	h.closers = append(h.closers, closeStore)
	obs.watchStore(st)
	deps.Store = st
	deps.Ready = append(deps.Ready, storeReady)
	if deps.Auth, err = startAuth(cfg.JWTSecret, log); err != nil {
		h.Close()
		return nil, err
	}
	pols, err := startRollout(ctx, cfg, obs.metrics.PolicyObserver(), log)
	if err != nil {
		h.Close()
		return nil, err
	}
	h.closers = append(h.closers, pols.close)
	deps.Policies = pols.decider
	deps.Rollout, deps.AdminToken = pols.mgr, cfg.AdminToken
	obs.watchPolicies(pols.engine)
	deps.Ready = append(deps.Ready, pols.readyCheck())
	if deps.Chat, err = startChat(cfg.LLMProvider, os.Getenv, deps.Store, pols.decider, obs.metrics.ChatObserver(), log); err != nil {
		h.Close()
		return nil, err
	}
	cc, closeCache, err := startCache(cfg, obs.metrics.CacheObserver(), log)
	if err != nil {
		h.Close()
		return nil, err
	}
	h.closers = append(h.closers, closeCache)
	obs.watchCache(cc, cfg.RedisURL != "")
	deps.Cache = cc
	h.srv = server.New(server.DefaultConfig(), deps)
	return h, nil
}
