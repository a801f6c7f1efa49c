package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/anthropic"
	"github.com/wingman-app/wingate/host/llm/openai"
	"github.com/wingman-app/wingate/host/llm/simulated"
	"github.com/wingman-app/wingate/host/policy"
)

// startChat assembles the AI coach: the tiers (defaults, or the file named
// by WINGATE_LLM_TIERS), a client for each provider they name, and the
// chat service over st and dec. provider is WINGATE_LLM_PROVIDER, the
// provider of tiers that name none.
//
// Environment: ANTHROPIC_API_KEY (required for anthropic),
// ANTHROPIC_BASE_URL; OPENAI_API_KEY, OPENAI_BASE_URL (any
// OpenAI-compatible server; the key may be empty for local servers);
// WINGATE_LLM_SIM_LATENCY and WINGATE_LLM_SIM_TOKEN_LATENCY (Go
// durations: the simulated provider's delay before the first token and per
// token, default 0).
func startChat(provider string, getenv func(string) string, st chat.Store, dec policy.Decider, obs chat.Observer, log *slog.Logger) (*chat.Service, error) {
	var tiers *llm.Tiers
	var err error
	if path := getenv("WINGATE_LLM_TIERS"); path != "" {
		if tiers, err = llm.LoadTiers(path, provider); err != nil {
			return nil, fmt.Errorf("chat: %w", err)
		}
	} else {
		tiers = llm.DefaultTiers(provider)
	}
	providers := map[string]llm.Provider{}
	for _, name := range append(tiers.Providers(), provider) {
		if providers[name] != nil {
			continue
		}
		p, err := newProvider(name, getenv, log)
		if err != nil {
			return nil, err
		}
		providers[name] = p
	}
	svc, err := chat.New(chat.Config{Store: st, Decider: dec, Tiers: tiers, Providers: providers,
		DefaultProvider: provider, Observer: obs, Log: log.With("component", "chat")})
	if err != nil {
		return nil, err
	}
	for _, t := range tiers.List() {
		log.Info("chat tier", "tier", t.Name, "provider", t.Provider, "model", t.Model,
			"input_per_mtok", t.PriceAt(time.Now()).InputPerMTok, "output_per_mtok", t.PriceAt(time.Now()).OutputPerMTok,
			"context_budget_tokens", t.ContextBudgetTokens)
	}
	return svc, nil
}

func newProvider(name string, getenv func(string) string, log *slog.Logger) (llm.Provider, error) {
	retry := func(p llm.Provider) llm.Provider { return llm.NewRetrying(p, llm.DefaultRetryConfig(), log) }
	switch name {
	case "simulated":
		first, err := chatEnvDuration(getenv, "WINGATE_LLM_SIM_LATENCY")
		if err != nil {
			return nil, err
		}
		per, err := chatEnvDuration(getenv, "WINGATE_LLM_SIM_TOKEN_LATENCY")
		if err != nil {
			return nil, err
		}
		log.Warn("LLM provider is simulated: answers are generated offline and labelled [simulated]",
			"first_token_latency", first, "token_latency", per)
		return simulated.New(simulated.Options{FirstToken: first, PerToken: per, Log: log}), nil
	case "anthropic":
		key := getenv("ANTHROPIC_API_KEY")
		if key == "" {
			return nil, fmt.Errorf("%w: WINGATE_LLM_PROVIDER or a tier names anthropic but ANTHROPIC_API_KEY is unset", errUsage)
		}
		return retry(anthropic.New(anthropic.Config{APIKey: key, BaseURL: getenv("ANTHROPIC_BASE_URL")})), nil
	case "openai":
		return retry(openai.New(openai.Config{APIKey: getenv("OPENAI_API_KEY"), BaseURL: getenv("OPENAI_BASE_URL")})), nil
	}
	return nil, fmt.Errorf("%w: LLM provider %q: want simulated, anthropic or openai", errUsage, name)
}

func chatEnvDuration(getenv func(string) string, name string) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %s=%q: want a duration like 200ms", errUsage, name, v)
	}
	return d, nil
}
