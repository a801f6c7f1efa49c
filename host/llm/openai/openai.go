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

type message = llm.WireMessage

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type request struct {
	Model               string         `json:"model"`
	Messages            []message      `json:"messages"`
	MaxTokens           int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens int            `json:"max_completion_tokens,omitempty"`
	Temperature         *float64       `json:"temperature,omitempty"`
	Stream              bool           `json:"stream,omitempty"`
	StreamOptions       *streamOptions `json:"stream_options,omitempty"`
	User                string         `json:"user,omitempty"`
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
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"message"`
		Delta *struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
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
	if req.System != "" {
		r.Messages = append(r.Messages, message{Role: llm.RoleSystem, Content: req.System})
	}
	for _, m := range req.Messages {
		r.Messages = append(r.Messages, message{Role: m.Role, Content: m.Content})
	}
	return r
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
	return llm.ReadStream(ctx, c.Name(), "[DONE]", body, onDelta, func(ev sse.Event, out *llm.Stream) (bool, error) {
		data := strings.TrimSpace(ev.Data)
		if data == "[DONE]" {
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
			if ch.Delta != nil && ch.Delta.Content != nil && *ch.Delta.Content != "" {
				if err := out.Delta(*ch.Delta.Content); err != nil {
					return false, err
				}
			}
		}
		return false, nil
	})
}

// String describes the client for logs.
func (c *Client) String() string { return fmt.Sprintf("openai(%s)", c.BaseURL) }
