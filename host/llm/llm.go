// Package llm is the host's boundary to language-model providers: one
// Provider interface, typed errors every client maps its failures onto, a
// retrying wrapper, the tier configuration with its prices, and token
// counting (o200k). The clients live in subpackages: anthropic (Messages
// API), openai (any OpenAI-compatible chat completions server) and
// simulated (offline and deterministic, the default).
package llm

import (
	"context"

	"github.com/wingman-app/wingate/host/observe/event"
)

// Roles of a message sent to a provider.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one message of a request's conversation.
type Message struct {
	Role    string // RoleUser, RoleAssistant or RoleSystem
	Content string
}

// Request is one call to a model.
type Request struct {
	// Model is the provider's model name, e.g. claude-haiku-4-5.
	Model string
	// System is the system prompt. Messages with RoleSystem are appended to
	// it by clients whose wire format keeps the system prompt apart.
	System   string
	Messages []Message
	// MaxTokens caps the output; 0 means the client's default.
	MaxTokens int
	// Temperature is passed on when set.
	Temperature *float64
	// User is an opaque end-user id some providers accept for abuse tracking.
	User string
}

// Usage is what a provider reports it billed for one call (event.Usage):
// InputTokens counts only uncached input; cached input is in
// CacheReadTokens and CacheWriteTokens.
type Usage = event.Usage

// Response is a model's complete answer.
type Response struct {
	ID         string
	Model      string // the model that answered, as the provider names it
	Text       string
	StopReason string // end_turn, max_tokens, stop, length, …
	Usage      Usage
	// Simulated is true when no real model produced the text.
	Simulated bool
}

// DeltaFunc receives streamed text as it arrives. Returning an error stops
// the stream; the call then fails with that error.
type DeltaFunc func(text string) error

// Provider is a model provider's client. Implementations are safe for
// concurrent use.
type Provider interface {
	// Name identifies the provider in logs, metrics and stored messages
	// (anthropic, openai, simulated).
	Name() string
	// Complete sends req and returns the whole answer. When onDelta is
	// non-nil the answer is streamed and onDelta sees each piece of text
	// in order before Complete returns. Failures are *Error values.
	Complete(ctx context.Context, req *Request, onDelta DeltaFunc) (*Response, error)
}
