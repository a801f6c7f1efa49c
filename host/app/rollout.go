package app

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/server"
	"github.com/wingman-app/wingate/host/store/pgpolicy"
)

// rolloutHost is the policy runtime of a serve process with the rollout
// manager that owns its engine's versions.
type rolloutHost struct {
	rt      *policy.Runtime
	mgr     *rollout.Manager
	engine  *policy.Engine
	decider policy.Decider
	pg      *pgpolicy.Store
	// compile releases a tiered start's background compilations, held
	// while the policies load (nil: none held).
	compile func()
}

// parsePubKey reads WINGATE_POLICY_PUBKEY: the key itself (base64) or the
// path of a file holding it (from `wingate policy keygen`).
func parsePubKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if k, err := rollout.ParsePublicKey(s); err == nil {
		return k, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("%w: policy public key: neither a base64 key nor a readable file: %v", ErrUsage, err)
	}
	return rollout.ParsePublicKey(string(b))
}

// startRollout creates the policy runtime and the rollout manager. Local
// mode (no DATABASE_URL): versions live in memory, the policy directory is
// loaded and watched. Fleet mode (DATABASE_URL): versions live in
// PostgreSQL, the instance starts on the store's active set (importing the
// directory only for kinds with none) and follows LISTEN/NOTIFY. Missing
// or broken policies are warnings: their kinds serve the fallback.
func startRollout(ctx context.Context, cfg Config, obs policy.Observer, log *slog.Logger) (*rolloutHost, error) {
	pub, err := parsePubKey(cfg.PolicyPubKey)
	if err != nil {
		return nil, err
	}
	rt, err := policy.NewRuntime(ctx, policy.Options{Logger: log, Observer: obs,
		StartTimeout: cfg.PolicyInitTimeout, InitTimeout: cfg.PolicyInitTimeout})
	if err != nil {
		return nil, fmt.Errorf("policy runtime: %w", err)
	}
	h := &rolloutHost{rt: rt}
	if cfg.PolicyStart != "compiled" {
		// The interpreter's loading, not the compilation, is what the
		// server waits for: it gets the processors until the assembly
		// is done (App.build releases it).
		h.compile = rt.HoldCompilations()
	}
	host, _ := os.Hostname()
	mc := rollout.Config{Runtime: rt, Engine: policy.EngineOptions{Logger: log, Observer: obs}, PublicKey: pub,
		Logger: log, Instance: host + "/" + cfg.Addr}
	fleet := cfg.DatabaseURL != ""
	if fleet {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h.pg, err = pgpolicy.Open(octx, pgpolicy.Config{URL: cfg.DatabaseURL, Logger: log})
		cancel()
		if err != nil {
			// Degrade, don't fail: serve the policy directory alone.
			log.Warn("policy version store unavailable: serving the policy directory without fleet roll-out until restart", "err", err)
			h.pg, fleet = nil, false
		} else {
			mc.Store, mc.Notifier = h.pg, h.pg
		}
	}
	if !fleet {
		mc.Store = rollout.NewMemStore()
	}
	if h.mgr, err = rollout.New(mc); err != nil {
		h.close()
		return nil, err
	}
	h.engine, h.decider = h.mgr.Engine(), h.mgr.Decider()
	if pub != nil {
		log.Info("policy signatures required", "pubkey", rollout.EncodePublicKey(pub))
	}
	// Nothing is served until the policies are loaded. A tiered start
	// (the default) loads a module the compilation cache lacks on the
	// interpreter in a fraction of a second and compiles it in the
	// background at a lowered priority (policy.WithTieredStart); one the
	// cache holds, or every module with policy_start "compiled", is
	// compiled now on every processor (policy.WithCompileWorkers).
	// Later candidates (pushes, directory edits) compile on one.
	ctx = policy.WithCompileWorkers(ctx, runtime.GOMAXPROCS(0))
	if cfg.PolicyStart != "compiled" {
		ctx = policy.WithTieredStart(ctx)
	}
	if fleet {
		if err := h.mgr.Sync(ctx); err != nil {
			log.Warn("some active policy versions of the store failed here: their kinds keep the fallback", "err", err)
		}
	}
	err = h.mgr.ImportDir(ctx, cfg.PolicyDir, fleet)
	switch {
	case errors.Is(err, policy.ErrNoPoliciesFile):
		log.Warn("no policies file: every policy kind without a stored version serves its fallback decision", "dir", cfg.PolicyDir, "err", err)
	case err != nil:
		log.Warn("some policies failed to load: their kinds serve the fallback decision", "dir", cfg.PolicyDir, "err", err)
	}
	if fleet {
		log.Warn("DATABASE_URL set: the policy directory only seeds kinds with no active stored version and is not watched; edits to it are not served: push versions with `wingate policy push`", "dir", cfg.PolicyDir)
	}
	if !fleet && !errors.Is(err, policy.ErrNoPoliciesFile) {
		if err := h.mgr.WatchDir(cfg.PolicyDir, 0); err != nil {
			log.Warn("policy directory not watched", "err", err)
		}
	}
	h.mgr.Start()
	return h, nil
}

// readyCheck reports kinds without a healthy policy; informative only.
// Its detail says each kind's tier: a version served interpreted is
// ready (its decisions are the policy's), only slower until compiled.
func (h *rolloutHost) readyCheck() server.ReadyCheck {
	return server.ReadyCheck{Name: "policies", Check: h.engine.Ready, Detail: h.tiers}
}

// tiers describes the tier of each kind's active version: "cache
// compiled, route interpreted (compiling), ...".
func (h *rolloutHost) tiers() string {
	var b strings.Builder
	for _, a := range h.engine.List() {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.Kind.String() + " " + a.Stats.ExecTier.String())
		if a.Stats.ExecTier == policy.Interpreted {
			b.WriteString(" (compiling)")
		}
	}
	return b.String()
}

func (h *rolloutHost) close() {
	if h.mgr != nil {
		h.mgr.Close()
	}
	if h.pg != nil {
		h.pg.Close()
	}
	h.rt.Close(context.Background())
}
