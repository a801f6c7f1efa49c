package router

// The default model is learned from ../shared/data by the generator;
// its output is committed, so building the policy never needs the data.
//go:generate go run ../internal/gen -out model_gen.go
