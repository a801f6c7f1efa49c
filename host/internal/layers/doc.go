// Package layers holds the test that keeps the host's layers apart: it
// asks the go command for each package's dependencies and fails when a
// package that must stay free of a runtime links one. See docs/architecture.md.
package layers
