package app

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/store/memstore"
)

func TestStartChat(t *testing.T) {
	dir := t.TempDir()
	tiersFile := filepath.Join(dir, "tiers.json")
	os.WriteFile(tiersFile, []byte(`{"tiers":[
	  {"name":"economy","provider":"simulated","model":"small","prices":[{"effective":"2025-01-01","input_per_mtok":0.1,"output_per_mtok":0.4}]},
	  {"name":"standard","provider":"openai","model":"medium","prices":[{"effective":"2025-01-01","input_per_mtok":1,"output_per_mtok":4}]},
	  {"name":"premium","model":"large","prices":[{"effective":"2025-01-01","input_per_mtok":5,"output_per_mtok":20}]}]}`), 0o600)
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name     string
		provider string
		env      map[string]string
		wantErr  error
	}{
		{"simulated default", "simulated", nil, nil},
		{"simulated with latency", "simulated", map[string]string{"WINGATE_LLM_SIM_LATENCY": "1ms", "WINGATE_LLM_SIM_TOKEN_LATENCY": "0s"}, nil},
		{"bad latency", "simulated", map[string]string{"WINGATE_LLM_SIM_LATENCY": "soon"}, ErrUsage},
		{"anthropic without key", "anthropic", nil, ErrUsage},
		{"anthropic with key", "anthropic", map[string]string{"ANTHROPIC_API_KEY": "k"}, nil},
		{"openai local server", "openai", map[string]string{"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, nil},
		{"unknown provider", "llamas", nil, ErrUsage},
		{"tiers file mixing providers", "openai", map[string]string{"WINGATE_LLM_TIERS": tiersFile}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			cfg, err := Load("", getenv, map[string]string{"llm_provider": tt.provider})
			var svc *chat.Service
			if err == nil {
				svc, _, err = startChat(cfg, memstore.New(), nil, nil, log)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if tt.provider != "simulated" && tt.env["WINGATE_LLM_TIERS"] == "" {
				return // would call a real service
			}
			c, err := svc.Complete(context.Background(), chat.CompletionRequest{Model: "economy", Messages: []llm.Message{{Role: "user", Content: "hi"}}}, nil)
			if err != nil || !c.Response.Simulated {
				t.Fatalf("economy answer: %+v, %v", c, err)
			}
		})
	}
}
