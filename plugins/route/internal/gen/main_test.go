package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wingman-app/wingate/plugins/route/internal/train"
)

// TestGeneratedModelIsUpToDate retrains the model with the recipe on the
// shared data and checks that the result is byte for byte the committed
// router/model_gen.go: the generation step is deterministic and the
// committed weights are what it produces.
func TestGeneratedModelIsUpToDate(t *testing.T) {
	dir, err := train.DataDir()
	if errors.Is(err, train.ErrNoData) {
		t.Skipf("training data absent (%v): place the data sets in ../shared/data to check the generated model", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		t.Skip("short mode: retraining skipped")
	}
	c, err := train.LoadCLINC(dir)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := train.LoadRouteLLM(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := generate(c, ps, train.DefaultRecipe)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "router", "model_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, want) {
		t.Error("router/model_gen.go is not what the generator produces: run go generate ./plugins/route/router")
	}
}
