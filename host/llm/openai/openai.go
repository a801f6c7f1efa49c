// Package openai is a client of the OpenAI chat completions API
// (POST {base}/chat/completions) that works against any OpenAI-compatible
// server (OpenAI, vLLM, Ollama, llama.cpp, gateways), plain and streamed
// (SSE with stream_options.include_usage so the final chunk carries usage).
package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/sse"
)

// DefaultBaseURL is OpenAI's API, version prefix included.
const DefaultBaseURL = "https://api.openai.com/v1"

// Config configures a Client.
type Config struct {
	APIKey string
	// BaseURL includes the version prefix, e.g. http://localhost:8000/v1.
	BaseURL    string
	HTTPClient *http.Client
	// MaxCompletionTokens sends the output cap as max_completion_tokens
	// (OpenAI's current name) instead of max_tokens (understood by every
	// compatible server).
	MaxCompletionTokens bool
	// Organization and Project set OpenAI's optional headers.
	Organization string
	Project      string
}

// Client calls chat completions. Safe for concurrent use.
type Client struct {
	llm.Conn
	cfg Config
}

var _ llm.Provider = (*Client)(nil)

// New returns a client.
func New(cfg Config) *Client {
	return &Client{cfg: cfg, Conn: llm.NewConn("openai", cfg.BaseURL, DefaultBaseURL, cfg.HTTPClient)}
}

// Features: every parameter the gateway passes through is OpenAI's own.
func (c *Client) Features() llm.Feature {
	return llm.FeatureTopP | llm.FeatureStop | llm.FeatureSeed | llm.FeaturePenalties | llm.FeatureResponseFormat | llm.FeatureTools | llm.FeatureNames |
		llm.FeatureHotTemperature
}

type message struct {
	Role string `json:"role"`
	// Content is null for an assistant message that only calls tools.
	Content    *string    `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Name       string     `json:"name,omitempty"`
}

type toolCall struct {
	Index    *int   `json:"index,omitempty"` // in stream deltas
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type tool struct {
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type request struct {
	Model               string          `json:"model"`
	Messages            []message       `json:"messages"`
	MaxTokens           int             `json:"max_tokens,omitempty"`
	MaxCompletionTokens int             `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *streamOptions  `json:"stream_options,omitempty"`
	User                string          `json:"user,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	Stop                []string        `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	ResponseFormat      json.RawMessage `json:"response_format,omitempty"`
	Tools               []tool          `json:"tools,omitempty"`
	ToolChoice          any             `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
}

type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func (u *usage) toLLM() llm.Usage {
	if u == nil {
		return llm.Usage{}
	}
	out := llm.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
	if d := u.PromptTokensDetails; d != nil && d.CachedTokens > 0 && d.CachedTokens <= u.PromptTokens {
		out.CacheReadTokens = d.CachedTokens
		out.InputTokens -= d.CachedTokens
	}
	return out
}

type response struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message *struct {
			Role      string     `json:"role"`
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
		Delta *struct {
			Role      string     `json:"role"`
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage    `json:"usage"`
	Error *apiError `json:"error"`
}

type apiError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    any    `json:"code"`
}

func (c *Client) buildRequest(req *llm.Request, stream bool) request {
	r := request{Model: req.Model, Temperature: req.Temperature, Stream: stream, User: req.User}
	if stream {
		r.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	if req.MaxTokens > 0 {
		if c.cfg.MaxCompletionTokens {
			r.MaxCompletionTokens = req.MaxTokens
		} else {
			r.MaxTokens = req.MaxTokens
		}
	}
	p := &req.Params
	r.TopP, r.Stop, r.Seed, r.FrequencyPenalty, r.PresencePenalty = p.TopP, p.Stop, p.Seed, p.FrequencyPenalty, p.PresencePenalty
	r.ResponseFormat, r.ParallelToolCalls = p.ResponseFormat, p.ParallelToolCalls
	for _, t := range p.Tools {
		r.Tools = append(r.Tools, tool{Type: "function", Function: toolFunction{Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict}})
	}
	if tc := p.ToolChoice; tc != nil {
		if tc.Mode == llm.ToolChoiceFunction {
			r.ToolChoice = map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}}
		} else {
			r.ToolChoice = tc.Mode
		}
	}
	if req.System != "" {
		r.Messages = append(r.Messages, message{Role: llm.RoleSystem, Content: &req.System})
	}
	for i := range req.Messages {
		m := &req.Messages[i]
		wm := message{Role: m.Role, Content: &m.Content, ToolCallID: m.ToolCallID, Name: m.Name}
		for _, tc := range m.ToolCalls {
			w := toolCall{ID: tc.ID, Type: "function"}
			w.Function.Name, w.Function.Arguments = tc.Name, tc.Arguments
			wm.ToolCalls = append(wm.ToolCalls, w)
		}
		if len(wm.ToolCalls) > 0 && m.Content == "" {
			wm.Content = nil
		}
		r.Messages = append(r.Messages, wm)
	}
	return r
}

func toolCalls(ws []toolCall) []llm.ToolCall {
	var out []llm.ToolCall
	for _, w := range ws {
		out = append(out, llm.ToolCall{ID: w.ID, Name: w.Function.Name, Arguments: w.Function.Arguments})
	}
	return out
}

// Complete calls POST {base}/chat/completions, streamed when onDelta is
// non-nil.
func (c *Client) Complete(ctx context.Context, req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error) {
	header := func(h http.Header) {
		if c.cfg.APIKey != "" {
			h.Set("Authorization", "Bearer "+c.cfg.APIKey)
		}
		if c.cfg.Organization != "" {
			h.Set("OpenAI-Organization", c.cfg.Organization)
		}
		if c.cfg.Project != "" {
			h.Set("OpenAI-Project", c.cfg.Project)
		}
	}
	readStream := func(body io.Reader) (*llm.Response, error) { return c.readStream(ctx, body, onDelta) }
	return llm.Exchange(ctx, c.HC, c.Name(), c.BaseURL+"/chat/completions", c.buildRequest(req, onDelta != nil), header, onDelta,
		c.httpError, readStream, func(r *response, status int) (*llm.Response, error) {
			if r.Error != nil {
				return nil, &llm.Error{Provider: c.Name(), Kind: llm.KindUnavailable, Status: status, Type: r.Error.Type, Message: r.Error.Message}
			}
			if len(r.Choices) == 0 || r.Choices[0].Message == nil {
				return nil, &llm.Error{Provider: c.Name(), Kind: llm.KindUnavailable, Status: status, Message: "response without choices"}
			}
			out := &llm.Response{ID: r.ID, Model: r.Model, Usage: r.Usage.toLLM()}
			ch := r.Choices[0]
			if ch.Message.Content != nil {
				out.Text = *ch.Message.Content
			}
			out.ToolCalls = toolCalls(ch.Message.ToolCalls)
			if ch.FinishReason != nil {
				out.StopReason = *ch.FinishReason
			}
			return out, nil
		})
}

func (c *Client) httpError(res *http.Response) error {
	return llm.HTTPError(c.Name(), res, c.Now(), func(b []byte, e *llm.Error) bool {
		var body struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(b, &body) != nil || body.Error == nil {
			return false
		}
		e.Type, e.Message = body.Error.Type, body.Error.Message
		if e.Type == "" {
			if s, ok := body.Error.Code.(string); ok {
				e.Type = s
			}
		}
		if e.Type == "insufficient_quota" || body.Error.Code == "insufficient_quota" {
			// A 429 that no retry will fix.
			e.Kind, e.RetryAfter = llm.KindAuth, 0
		}
		return true
	})
}

// readStream reassembles chat.completion.chunk events: text from
// choices[0].delta.content, the finish reason, usage from the final chunk
// (choices empty), until data: [DONE]. A stream that ends before [DONE]
// or carries an error object fails the call.
func (c *Client) readStream(ctx context.Context, body io.Reader, onDelta llm.DeltaFunc) (*llm.Response, error) {
	var calls []llm.ToolCall // by index
	return llm.ReadStream(ctx, c.Name(), "[DONE]", body, onDelta, func(ev sse.Event, out *llm.Stream) (bool, error) {
		data := strings.TrimSpace(ev.Data)
		if data == "[DONE]" {
			out.ToolCalls = calls
			return true, nil
		}
		var r response
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			return false, &llm.Error{Provider: c.Name(), Kind: llm.KindStream, Message: "malformed chunk", Err: err}
		}
		if r.Error != nil {
			kind := llm.KindStream
			if r.Error.Type == "server_error" || r.Error.Type == "overloaded_error" {
				kind = llm.KindUnavailable
			}
			return false, &llm.Error{Provider: c.Name(), Kind: kind, Type: r.Error.Type, Message: r.Error.Message}
		}
		if r.ID != "" {
			out.ID = r.ID
		}
		if r.Model != "" {
			out.Model = r.Model
		}
		if r.Usage != nil {
			out.Usage = r.Usage.toLLM()
		}
		for _, ch := range r.Choices {
			if ch.Index != 0 {
				continue
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				out.StopReason = *ch.FinishReason
			}
			if ch.Delta == nil {
				continue
			}
			for _, d := range ch.Delta.ToolCalls {
				i := len(calls) - 1 // a delta without an index continues the last call
				if d.Index != nil {
					i = *d.Index
				}
				if i < 0 || i > len(calls) || i >= maxToolCalls {
					return false, &llm.Error{Provider: c.Name(), Kind: llm.KindStream, Message: "tool call delta out of order"}
				}
				if i == len(calls) {
					calls = append(calls, llm.ToolCall{})
				}
				tc := &calls[i]
				if d.ID != "" {
					tc.ID = d.ID
				}
				tc.Name += d.Function.Name
				tc.Arguments += d.Function.Arguments
			}
			if ch.Delta.Content != nil && *ch.Delta.Content != "" {
				if err := out.Delta(*ch.Delta.Content); err != nil {
					return false, err
				}
			}
		}
		return false, nil
	})
}

// maxToolCalls bounds the tool calls of one streamed answer.
const maxToolCalls = 128

// String describes the client for logs.
func (c *Client) String() string { return fmt.Sprintf("openai(%s)", c.BaseURL) }
