// Package llm is the host's boundary to language-model providers: one
// Provider interface, typed errors every client maps its failures onto, a
// retrying wrapper, the tier configuration with its prices, and token
// counting (o200k). The clients live in subpackages: anthropic (Messages
// API), openai (any OpenAI-compatible chat completions server) and
// simulated (offline and deterministic, the default).
package llm

import (
	"context"
	"encoding/json"

	"github.com/wingman-app/wingate/host/observe/event"
)

// Roles of a message sent to a provider.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	// RoleTool is a tool's result, answering one tool call of the
	// assistant message before it (ToolCallID).
	RoleTool = "tool"
)

// Message is one message of a request's conversation.
type Message struct {
	Role    string // RoleUser, RoleAssistant, RoleSystem or RoleTool
	Content string
	// ToolCalls are the calls an assistant message made.
	ToolCalls []ToolCall
	// ToolCallID names the call a RoleTool message answers.
	ToolCallID string
	// Name is the participant's name OpenAI's messages may carry
	// (FeatureNames).
	Name string
}

// Tool is a function the model may call.
type Tool struct {
	Name        string
	Description string
	// Parameters is the function's JSON Schema (an object), sent as is.
	Parameters json.RawMessage
	// Strict asks for arguments that follow the schema exactly, where the
	// provider offers it.
	Strict *bool
}

// Tool choice modes.
const (
	ToolChoiceAuto     = "auto"     // the model decides
	ToolChoiceNone     = "none"     // no tool call
	ToolChoiceRequired = "required" // at least one tool call
	ToolChoiceFunction = "function" // a call of the function Name
)

// ToolChoice says whether and which tool the model must call.
type ToolChoice struct {
	Mode string // one of the ToolChoice constants
	Name string // for ToolChoiceFunction
}

// ToolCall is one function call of the model's; Arguments is JSON text.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// Params are the request parameters a caller passes through to the
// provider beyond the conversation. A client sends each one its provider
// takes; the gateway refuses a request whose parameters the provider
// does not take (Features) instead of dropping them.
type Params struct {
	TopP             *float64
	Stop             []string
	Seed             *int64
	FrequencyPenalty *float64
	PresencePenalty  *float64
	// ResponseFormat is OpenAI's response_format object for a format
	// other than plain text (json_object, json_schema), sent as is.
	ResponseFormat    json.RawMessage
	Tools             []Tool
	ToolChoice        *ToolChoice
	ParallelToolCalls *bool
}

// Feature is one parameter family a provider takes (a bit of Features).
type Feature uint32

// The features. A provider's Features says which it passes on.
const (
	FeatureTopP Feature = 1 << iota
	FeatureStop
	FeatureSeed
	FeaturePenalties
	FeatureResponseFormat
	FeatureTools
	FeatureNames // a participant name on messages
	// FeatureHotTemperature is a temperature above 1 (OpenAI takes up to
	// 2, Anthropic up to 1).
	FeatureHotTemperature
)

// Used returns the features p uses, each with the request parameter that
// uses it, in the order of the OpenAI request's fields.
func (p *Params) Used() []FeatureUse {
	var out []FeatureUse
	if p.TopP != nil {
		out = append(out, FeatureUse{FeatureTopP, "top_p"})
	}
	if len(p.Stop) > 0 {
		out = append(out, FeatureUse{FeatureStop, "stop"})
	}
	if p.Seed != nil {
		out = append(out, FeatureUse{FeatureSeed, "seed"})
	}
	if p.FrequencyPenalty != nil {
		out = append(out, FeatureUse{FeaturePenalties, "frequency_penalty"})
	}
	if p.PresencePenalty != nil {
		out = append(out, FeatureUse{FeaturePenalties, "presence_penalty"})
	}
	if len(p.ResponseFormat) > 0 {
		out = append(out, FeatureUse{FeatureResponseFormat, "response_format"})
	}
	if len(p.Tools) > 0 {
		out = append(out, FeatureUse{FeatureTools, "tools"})
	}
	if p.ToolChoice != nil && p.ToolChoice.Mode != ToolChoiceNone {
		out = append(out, FeatureUse{FeatureTools, "tool_choice"})
	}
	if p.ParallelToolCalls != nil {
		out = append(out, FeatureUse{FeatureTools, "parallel_tool_calls"})
	}
	return out
}

// FeatureUse is a feature and the request parameter using it.
type FeatureUse struct {
	Feature Feature
	Param   string
}

// FeatureProvider is a Provider that says which features it takes.
type FeatureProvider interface {
	Features() Feature
}

// FeaturesOf returns the features p takes, looking through wrappers
// (Unwrap); a provider that does not say takes none.
func FeaturesOf(p Provider) Feature {
	for p != nil {
		if fp, ok := p.(FeatureProvider); ok {
			return fp.Features()
		}
		u, ok := p.(interface{ Unwrap() Provider })
		if !ok {
			return 0
		}
		p = u.Unwrap()
	}
	return 0
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
	// User is an opaque end-user id some providers accept for abuse
	// tracking (the gateway sends a keyed hash of its own id, or none).
	User string
	Params
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
	StopReason string // the provider's: end_turn, max_tokens, stop, length, tool_use, tool_calls, …
	// ToolCalls are the function calls the model made.
	ToolCalls []ToolCall
	Usage     Usage
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

// OpenAI's finish reasons.
const (
	FinishStop          = "stop"
	FinishLength        = "length"
	FinishToolCalls     = "tool_calls"
	FinishContentFilter = "content_filter"
)

// FinishReason maps a provider's stop reason onto OpenAI's finish_reason:
// length for an answer cut at its token cap (max_tokens, length,
// model_context_window_exceeded), tool_calls for an answer that calls
// tools (tool_use, tool_calls, function_call), content_filter for one a
// filter stopped or the model refused (content_filter, refusal), and stop
// for a natural end or a stop sequence (end_turn, stop, stop_sequence,
// and any reason not listed, e.g. pause_turn).
func FinishReason(stop string) string {
	switch stop {
	case "max_tokens", "length", "model_context_window_exceeded":
		return FinishLength
	case "tool_use", "tool_calls", "function_call":
		return FinishToolCalls
	case "content_filter", "refusal":
		return FinishContentFilter
	}
	return FinishStop
}
