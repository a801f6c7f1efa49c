// Package anthropic is a client of Anthropic's Messages API
// (POST /v1/messages), plain and streamed (SSE), mapping its usage block
// (including cache_read_input_tokens and cache_creation_input_tokens) and
// its errors onto the llm package's types.
package anthropic

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

// DefaultBaseURL is Anthropic's API.
const DefaultBaseURL = "https://api.anthropic.com"

// APIVersion is the anthropic-version header sent with every request.
const APIVersion = "2023-06-01"

// Config configures a Client.
type Config struct {
	APIKey  string
	BaseURL string // default DefaultBaseURL
	// HTTPClient defaults to a client without an overall timeout (streams
	// may be long); calls are bounded by their context.
	HTTPClient *http.Client
	// DefaultMaxTokens is used when a request sets none; default 1024.
	DefaultMaxTokens int
}

// Client calls the Messages API. Safe for concurrent use.
type Client struct {
	llm.Conn
	cfg Config
}

var _ llm.Provider = (*Client)(nil)

// New returns a client.
func New(cfg Config) *Client {
	if cfg.DefaultMaxTokens <= 0 {
		cfg.DefaultMaxTokens = 1024
	}
	return &Client{cfg: cfg, Conn: llm.NewConn("anthropic", cfg.BaseURL, DefaultBaseURL, cfg.HTTPClient)}
}

// wire types of the Messages API

// Features: top_p, stop sequences and tools; the Messages API has no
// seed, penalties, response_format or participant names, and takes a
// temperature of at most 1.
func (c *Client) Features() llm.Feature {
	return llm.FeatureTopP | llm.FeatureStop | llm.FeatureTools
}

// message is a turn: Content is a string, or blocks when the turn carries
// tool calls or results.
type message struct {
	Role    string `json:"role"`
	Content any    `json:"content"`
}

type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   *string         `json:"content,omitempty"`
}

type tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type toolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type request struct {
	Model         string      `json:"model"`
	MaxTokens     int         `json:"max_tokens"`
	System        string      `json:"system,omitempty"`
	Messages      []message   `json:"messages"`
	Stream        bool        `json:"stream,omitempty"`
	Temperature   *float64    `json:"temperature,omitempty"`
	TopP          *float64    `json:"top_p,omitempty"`
	StopSequences []string    `json:"stop_sequences,omitempty"`
	Tools         []tool      `json:"tools,omitempty"`
	ToolChoice    *toolChoice `json:"tool_choice,omitempty"`
	Metadata      *metadata   `json:"metadata,omitempty"`
}

type metadata struct {
	UserID string `json:"user_id,omitempty"`
}

type usage struct {
	InputTokens              *int `json:"input_tokens"`
	OutputTokens             *int `json:"output_tokens"`
	CacheCreationInputTokens *int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int `json:"cache_read_input_tokens"`
}

// merge overwrites u's fields with those v reports (message_delta carries
// cumulative counts).
func (u *llmUsage) merge(v *usage) {
	if v == nil {
		return
	}
	if v.InputTokens != nil {
		u.InputTokens = *v.InputTokens
	}
	if v.OutputTokens != nil {
		u.OutputTokens = *v.OutputTokens
	}
	if v.CacheCreationInputTokens != nil {
		u.CacheWriteTokens = *v.CacheCreationInputTokens
	}
	if v.CacheReadInputTokens != nil {
		u.CacheReadTokens = *v.CacheReadInputTokens
	}
}

type llmUsage llm.Usage

type contentBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type response struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Role       string         `json:"role"`
	Model      string         `json:"model"`
	Content    []contentBlock `json:"content"`
	StopReason string         `json:"stop_reason"`
	Usage      *usage         `json:"usage"`
}

type apiError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// streamEvent covers every event type of a streamed message.
type streamEvent struct {
	Type         string        `json:"type"`
	Message      *response     `json:"message"`
	Index        int           `json:"index"`
	ContentBlock *contentBlock `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func (c *Client) buildRequest(req *llm.Request, stream bool) request {
	r := request{Model: req.Model, MaxTokens: req.MaxTokens, System: req.System, Stream: stream, Temperature: req.Temperature,
		TopP: req.TopP, StopSequences: req.Stop}
	if r.MaxTokens <= 0 {
		r.MaxTokens = c.cfg.DefaultMaxTokens
	}
	if req.User != "" {
		r.Metadata = &metadata{UserID: req.User}
	}
	for _, t := range req.Tools {
		schema := t.Parameters
		if len(schema) == 0 {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		r.Tools = append(r.Tools, tool{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	if tc := req.ToolChoice; tc != nil || (req.ParallelToolCalls != nil && !*req.ParallelToolCalls) {
		r.ToolChoice = &toolChoice{Type: "auto"}
		if tc != nil {
			switch tc.Mode {
			case llm.ToolChoiceNone:
				r.ToolChoice.Type = "none"
			case llm.ToolChoiceRequired:
				r.ToolChoice.Type = "any"
			case llm.ToolChoiceFunction:
				r.ToolChoice.Type, r.ToolChoice.Name = "tool", tc.Name
			}
		}
		if req.ParallelToolCalls != nil && !*req.ParallelToolCalls && r.ToolChoice.Type != "none" {
			r.ToolChoice.DisableParallelToolUse = true
		}
	}
	var sys []string
	if r.System != "" {
		sys = append(sys, r.System)
	}
	var turns []struct {
		role   string
		blocks []block
	}
	for _, m := range req.Messages {
		if m.Role == llm.RoleSystem {
			sys = append(sys, m.Content)
			continue
		}
		role := llm.RoleUser
		if m.Role == llm.RoleAssistant {
			role = llm.RoleAssistant
		}
		var blocks []block
		switch {
		case m.Role == llm.RoleTool:
			content := m.Content
			blocks = append(blocks, block{Type: "tool_result", ToolUseID: m.ToolCallID, Content: &content})
		default:
			blocks = append(blocks, block{Type: "text", Text: m.Content})
			for _, tc := range m.ToolCalls {
				input := json.RawMessage(tc.Arguments)
				if !json.Valid(input) {
					input = json.RawMessage(`{}`)
				}
				blocks = append(blocks, block{Type: "tool_use", ID: tc.ID, Name: tc.Name, Input: input})
			}
		}
		// The API wants alternating turns: merge consecutive ones.
		if n := len(turns); n > 0 && turns[n-1].role == role {
			turns[n-1].blocks = append(turns[n-1].blocks, blocks...)
			continue
		}
		if len(turns) == 0 && role == llm.RoleAssistant {
			// and a user turn first.
			turns = append(turns, struct {
				role   string
				blocks []block
			}{llm.RoleUser, []block{{Type: "text", Text: "(conversation continues)"}}})
		}
		turns = append(turns, struct {
			role   string
			blocks []block
		}{role, blocks})
	}
	for _, t := range turns {
		r.Messages = append(r.Messages, message{Role: t.role, Content: content(t.blocks)})
	}
	r.System = strings.Join(sys, "\n\n")
	return r
}

// content is a turn's content: its text as a string when it has only
// text (consecutive texts joined by a blank line), else its blocks
// without empty texts (which the API refuses).
func content(blocks []block) any {
	var texts []string
	plain := true
	for _, b := range blocks {
		if b.Type != "text" {
			plain = false
			break
		}
		texts = append(texts, b.Text)
	}
	if plain {
		return strings.Join(texts, "\n\n")
	}
	out := blocks[:0:0]
	for _, b := range blocks {
		if b.Type == "text" && b.Text == "" {
			continue
		}
		out = append(out, b)
	}
	return out
}

// Complete calls POST /v1/messages, streamed when onDelta is non-nil.
func (c *Client) Complete(ctx context.Context, req *llm.Request, onDelta llm.DeltaFunc) (*llm.Response, error) {
	header := func(h http.Header) {
		h.Set("x-api-key", c.cfg.APIKey)
		h.Set("anthropic-version", APIVersion)
	}
	readStream := func(body io.Reader) (*llm.Response, error) { return c.readStream(ctx, body, onDelta) }
	return llm.Exchange(ctx, c.HC, c.Name(), c.BaseURL+"/v1/messages", c.buildRequest(req, onDelta != nil), header, onDelta,
		c.httpError, readStream, func(r *response, _ int) (*llm.Response, error) {
			out := &llm.Response{ID: r.ID, Model: r.Model, StopReason: r.StopReason}
			var u llmUsage
			u.merge(r.Usage)
			out.Usage = llm.Usage(u)
			var text strings.Builder
			for _, b := range r.Content {
				switch b.Type {
				case "text":
					text.WriteString(b.Text)
				case "tool_use":
					args := string(b.Input)
					if args == "" {
						args = "{}"
					}
					out.ToolCalls = append(out.ToolCalls, llm.ToolCall{ID: b.ID, Name: b.Name, Arguments: args})
				}
			}
			out.Text = text.String()
			return out, nil
		})
}

func (c *Client) httpError(res *http.Response) error {
	return llm.HTTPError(c.Name(), res, c.Now(), func(b []byte, e *llm.Error) bool {
		var ae apiError
		if json.Unmarshal(b, &ae) != nil || ae.Error.Type == "" {
			return false
		}
		e.Type, e.Message = ae.Error.Type, ae.Error.Message
		return true
	})
}

// maxToolCalls bounds the tool calls of one streamed answer.
const maxToolCalls = 128

// readStream reassembles a streamed message: message_start (id, model,
// input usage), content_block_delta text deltas, message_delta (stop
// reason, cumulative output usage), message_stop. An error event or a
// stream that ends before message_stop fails the call.
func (c *Client) readStream(ctx context.Context, body io.Reader, onDelta llm.DeltaFunc) (*llm.Response, error) {
	var u llmUsage
	calls := map[int]*llm.ToolCall{} // tool_use blocks by index
	var order []int
	return llm.ReadStream(ctx, c.Name(), "message_stop", body, onDelta, func(ev sse.Event, out *llm.Stream) (bool, error) {
		var se streamEvent
		if err := json.Unmarshal([]byte(ev.Data), &se); err != nil {
			return false, &llm.Error{Provider: c.Name(), Kind: llm.KindStream, Message: fmt.Sprintf("malformed %s event", ev.Event), Err: err}
		}
		typ := se.Type
		if typ == "" {
			typ = ev.Event
		}
		switch typ {
		case "message_start":
			if se.Message != nil {
				out.ID, out.Model = se.Message.ID, se.Message.Model
				u.merge(se.Message.Usage)
			}
		case "content_block_start":
			if b := se.ContentBlock; b != nil && b.Type == "tool_use" {
				if _, dup := calls[se.Index]; dup || len(calls) >= maxToolCalls {
					return false, &llm.Error{Provider: c.Name(), Kind: llm.KindStream, Message: "tool_use block repeated or over the limit"}
				}
				calls[se.Index] = &llm.ToolCall{ID: b.ID, Name: b.Name}
				order = append(order, se.Index)
			}
		case "content_block_stop", "ping":
		case "content_block_delta":
			switch {
			case se.Delta == nil:
			case se.Delta.Type == "text_delta" && se.Delta.Text != "":
				if err := out.Delta(se.Delta.Text); err != nil {
					return false, err
				}
			case se.Delta.Type == "input_json_delta":
				tc := calls[se.Index]
				if tc == nil {
					return false, &llm.Error{Provider: c.Name(), Kind: llm.KindStream, Message: "input_json_delta outside a tool_use block"}
				}
				tc.Arguments += se.Delta.PartialJSON
			}
		case "message_delta":
			if se.Delta != nil && se.Delta.StopReason != "" {
				out.StopReason = se.Delta.StopReason
			}
			u.merge(se.Usage)
		case "message_stop":
			out.Usage = llm.Usage(u)
			for _, i := range order {
				tc := *calls[i]
				if tc.Arguments == "" {
					tc.Arguments = "{}"
				}
				out.ToolCalls = append(out.ToolCalls, tc)
			}
			return true, nil
		case "error":
			e := &llm.Error{Provider: c.Name(), Kind: llm.KindStream, Message: "error event"}
			if se.Error != nil {
				e.Type, e.Message = se.Error.Type, se.Error.Message
				switch se.Error.Type {
				case "overloaded_error", "api_error":
					e.Kind = llm.KindUnavailable
				case "rate_limit_error":
					e.Kind = llm.KindRateLimited
				case "invalid_request_error":
					e.Kind = llm.KindBadRequest
				}
			}
			return false, e
		}
		return false, nil
	})
}
