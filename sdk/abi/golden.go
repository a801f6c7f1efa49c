package abi

import (
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

//go:embed testdata/golden/*.json
var goldenFS embed.FS

// GoldenVector is one case of a golden vector file (see ABI.md §9):
// a value in the offline-evaluation JSON shape and its exact encoding.
type GoldenVector struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
	Hex   string          `json:"hex"`
}

// Bytes returns the vector's encoding.
func (g GoldenVector) Bytes() ([]byte, error) { return hex.DecodeString(g.Hex) }

// GoldenVectors returns the cases of one golden vector file, e.g.
// "cache_request.json", as built into the binary: conformance tools run
// them against a module without the repository at hand.
func GoldenVectors(file string) ([]GoldenVector, error) {
	b, err := goldenFS.ReadFile("testdata/golden/" + file)
	if err != nil {
		return nil, err
	}
	var v []GoldenVector
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("golden %s: %w", file, err)
	}
	return v, nil
}
