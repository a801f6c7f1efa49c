package main

import (
	"encoding/json"
	"fmt"
)

// configFromPolicies returns the config value of the cache entry.
func configFromPolicies(b []byte) ([]byte, error) {
	var f struct {
		Policies []struct {
			Kind   string          `json:"kind"`
			Name   string          `json:"name"`
			Config json.RawMessage `json:"config"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("policies file: %w", err)
	}
	for _, p := range f.Policies {
		if p.Kind == "cache" && p.Name == "cache" {
			return p.Config, nil
		}
	}
	return nil, nil
}
