package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/sdk"
	"github.com/wingman-app/wingate/sdk/abi"
)

// caseFile is the format of testdata/cases/*.json (see the policy test
// runner): input and a partial expected output in the offline-evaluation
// JSON shapes.
type caseFile []struct {
	Name  string `json:"name"`
	Input struct {
		Messages []struct {
			ID     string `json:"id"`
			Role   string `json:"role"`
			Text   string `json:"text"`
			Tokens uint32 `json:"tokens"`
		} `json:"messages"`
		Query        string `json:"query"`
		BudgetTokens uint32 `json:"budget_tokens"`
	} `json:"input"`
	Want struct {
		Keep      *[]string `json:"keep"`
		Summary   *string   `json:"summary"`
		Tokens    *uint32   `json:"tokens"`
		MustKeep  []string  `json:"must_keep"`
		MaxTokens *uint32   `json:"max_tokens"`
	} `json:"want"`
}

var roles = map[string]abi.Role{"user": sdk.RoleUser, "assistant": sdk.RoleAssistant, "system": sdk.RoleSystem}

// shippedConfig returns the config of the compress entry of
// policies/policies.json, or nil (the defaults) when there is none yet.
func shippedConfig(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "policies", "policies.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Kind   string          `json:"kind"`
		Config json.RawMessage `json:"config"`
	}
	var list []entry
	if err := json.Unmarshal(raw, &list); err != nil {
		var wrapped struct {
			Policies []entry `json:"policies"`
		}
		if err := json.Unmarshal(raw, &wrapped); err != nil {
			t.Fatalf("policies.json: %v", err)
		}
		list = wrapped.Policies
	}
	for _, e := range list {
		if e.Kind == "compress" {
			return e.Config
		}
	}
	return nil
}

// TestCases runs the case files through the registered handler, over the
// same binary encoding the host uses, with the shipped configuration.
func TestCases(t *testing.T) {
	if err := sdk.CallInit(shippedConfig(t)); err != nil {
		t.Fatalf("init with the shipped config: %v", err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files: %v", err)
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var cases caseFile
		if err := json.Unmarshal(raw, &cases); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tc := range cases {
			t.Run(filepath.Base(file)+"/"+tc.Name, func(t *testing.T) {
				req := sdk.CompressRequest{Query: tc.Input.Query, BudgetTokens: tc.Input.BudgetTokens}
				for _, m := range tc.Input.Messages {
					role, ok := roles[m.Role]
					if !ok {
						t.Fatalf("message %s: unknown role %q", m.ID, m.Role)
					}
					req.Messages = append(req.Messages, sdk.Message{ID: m.ID, Role: role, Text: m.Text, Tokens: m.Tokens})
				}
				got, err := sdk.CallCompress(req)
				if err != nil {
					t.Fatal(err)
				}
				keep := make([]string, 0, len(got.Keep))
				kept := map[string]bool{}
				for _, k := range got.Keep {
					keep = append(keep, req.Messages[k].ID)
					kept[req.Messages[k].ID] = true
				}
				w := tc.Want
				if w.Keep != nil && !equal(keep, *w.Keep) {
					t.Errorf("keep = %v, want %v", keep, *w.Keep)
				}
				if w.Summary != nil && got.Summary != *w.Summary {
					t.Errorf("summary = %q, want %q", got.Summary, *w.Summary)
				}
				if w.Tokens != nil && got.Tokens != *w.Tokens {
					t.Errorf("tokens = %d, want %d", got.Tokens, *w.Tokens)
				}
				for _, id := range w.MustKeep {
					if !kept[id] {
						t.Errorf("message %s not kept; kept %v", id, keep)
					}
				}
				if w.MaxTokens != nil && got.Tokens > *w.MaxTokens {
					t.Errorf("tokens = %d, want at most %d", got.Tokens, *w.MaxTokens)
				}
				if got.Tokens > req.BudgetTokens {
					t.Errorf("tokens = %d over the budget %d", got.Tokens, req.BudgetTokens)
				}
			})
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestInitRejectsBadConfig checks that a configuration error reaches the
// host as an init failure rather than a policy running on defaults.
func TestInitRejectsBadConfig(t *testing.T) {
	for _, cfg := range []string{`{"recent_fraction": 2}`, `{"k1": "x"}`, `[1,2]`} {
		if err := sdk.CallInit([]byte(cfg)); err == nil {
			t.Errorf("init(%s) succeeded, want an error", cfg)
		}
	}
	if err := sdk.CallInit(nil); err != nil {
		t.Fatalf("init with no config: %v", err)
	}
}
