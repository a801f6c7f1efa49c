package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wingman-app/wingate/host/policy"
	"github.com/wingman-app/wingate/host/server"
)

// policyHost is the policy runtime and engine of a serve process.
type policyHost struct {
	rt     *policy.Runtime
	engine *policy.Engine
}

// startPolicies creates the policy runtime and loads the policies in dir.
// Missing or broken policies are warnings, not errors: the engine then
// serves the fail-open fallback for their kinds.
func startPolicies(ctx context.Context, dir string, log *slog.Logger) (*policyHost, error) {
	rt, err := policy.NewRuntime(ctx, policy.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("policy runtime: %w", err)
	}
	eng := policy.NewEngine(policy.EngineOptions{Logger: log})
	loaded, err := policy.LoadDir(ctx, rt, eng, dir)
	switch {
	case errors.Is(err, policy.ErrNoPoliciesFile):
		log.Warn("no policies file: every policy kind serves its fallback decision", "dir", dir, "err", err)
	case err != nil:
		log.Warn("some policies failed to load: their kinds serve the fallback decision", "dir", dir, "err", err)
	}
	for _, v := range loaded {
		log.Info("policy active", "policy", v.Name(), "version", v.Digest(), "kinds", fmt.Sprint(v.Kinds()))
	}
	return &policyHost{rt: rt, engine: eng}, nil
}

// readyCheck reports kinds without a healthy policy; informative only.
func (p *policyHost) readyCheck() server.ReadyCheck {
	return server.ReadyCheck{Name: "policies", Check: p.engine.Ready}
}

func (p *policyHost) close() {
	p.engine.Close()
	p.rt.Close(context.Background())
}
