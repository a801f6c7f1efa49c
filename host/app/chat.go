package app

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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

// startChat assembles the AI coach: the tiers (defaults, or the file
// cfg.LLMTiers), a client for each provider they name, and the chat
// service over st and dec. cfg.LLMProvider is the provider of tiers that
// name none; anthropic needs cfg.AnthropicAPIKey.
// The connection pools of the providers that have one are returned by
// provider name.
func startChat(cfg Config, st chat.Store, dec policy.Decider, obs chat.Observer, log *slog.Logger) (*chat.Service, map[string]*llm.Pool, error) {
	provider := cfg.LLMProvider
	var tiers *llm.Tiers
	var err error
	if path := cfg.LLMTiers; path != "" {
		if tiers, err = llm.LoadTiers(path, provider); err != nil {
			return nil, nil, fmt.Errorf("chat: %w", err)
		}
	} else {
		tiers = llm.DefaultTiers(provider)
	}
	providers := map[string]llm.Provider{}
	pools := map[string]*llm.Pool{}
	for _, name := range append(tiers.Providers(), provider) {
		if providers[name] != nil {
			continue
		}
		p, pool, err := newProvider(name, cfg, log)
		if err != nil {
			return nil, nil, err
		}
		if pool != nil {
			pools[name] = pool
		}
		providers[name] = p
	}
	svc, err := chat.New(chat.Config{Store: st, Decider: dec, Tiers: tiers, Providers: providers,
		DefaultProvider: provider, PassThroughModels: cfg.LLMPassThrough == "on", UpstreamUser: upstreamUser(cfg, log), Observer: obs, Log: log.With("component", "chat")})
	if err != nil {
		return nil, nil, err
	}
	for _, t := range tiers.List() {
		log.Info("chat tier", "tier", t.Name, "provider", t.Provider, "model", t.Model,
			"input_per_mtok", t.PriceAt(time.Now()).InputPerMTok, "output_per_mtok", t.PriceAt(time.Now()).OutputPerMTok,
			"context_budget_tokens", t.ContextBudgetTokens)
	}
	return svc, pools, nil
}

// upstreamUser returns what providers are told of the end user: a keyed
// hash (cfg.LLMUser "hash"), its key cfg.LLMUserKey or one derived from
// the JWT secret, so that it is stable across restarts and instances
// sharing the secret; nil ("off"): nothing.
func upstreamUser(cfg Config, log *slog.Logger) func(string) string {
	if cfg.LLMUser == "off" {
		return nil
	}
	key := []byte(cfg.LLMUserKey)
	if len(key) == 0 && cfg.JWTSecret != "" {
		m := hmac.New(sha256.New, []byte(cfg.JWTSecret))
		m.Write([]byte("wingate: model provider user hash key"))
		key = m.Sum(nil)
	}
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		log.Warn("chat: no JWT secret or WINGATE_LLM_USER_KEY: the user hash sent to model providers changes with every start")
	}
	return chat.HashUser(key)
}

// newProvider returns the client of provider name, and its connection
// pool (nil for the simulated provider).
func newProvider(name string, cfg Config, log *slog.Logger) (llm.Provider, *llm.Pool, error) {
	retry := func(p llm.Provider) llm.Provider { return llm.NewRetrying(p, llm.DefaultRetryConfig(), log) }
	// Each provider has a connection pool of its own.
	pool := llm.NewPool(llm.PoolConfig{MaxIdleConnsPerHost: int(cfg.LLMMaxIdleConns)})
	switch name {
	case "simulated":
		first, per := cfg.SimLatency, cfg.SimTokenLatency
		log.Warn("LLM provider is simulated: answers are generated offline and labelled [simulated]",
			"first_token_latency", first, "token_latency", per)
		return simulated.New(simulated.Options{FirstToken: first, PerToken: per, Log: log}), nil, nil
	case "anthropic":
		key := cfg.AnthropicAPIKey
		if key == "" {
			return nil, nil, fmt.Errorf("%w: WINGATE_LLM_PROVIDER or a tier names anthropic but ANTHROPIC_API_KEY is unset", ErrUsage)
		}
		return retry(anthropic.New(anthropic.Config{APIKey: key, BaseURL: cfg.AnthropicBaseURL, HTTPClient: pool.Client})), pool, nil
	case "openai":
		return retry(openai.New(openai.Config{APIKey: cfg.OpenAIAPIKey, BaseURL: cfg.OpenAIBaseURL, HTTPClient: pool.Client})), pool, nil
	}
	return nil, nil, fmt.Errorf("%w: LLM provider %q: want simulated, anthropic or openai", ErrUsage, name)
}
