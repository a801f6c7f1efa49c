package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
)

// The inbound Anthropic Messages API: POST /v1/messages, as Anthropic's
// SDKs and tools send it, answered by the same route → compress →
// provider pipeline as /v1/chat/completions, in Anthropic's shapes
// (message, streamed events in Anthropic's order, errors). The API key
// (x-api-key, or a bearer token) is a virtual key or a Wingate user
// token.

// routeMessages is the Anthropic-compatible gateway's route.
const routeMessages = "/v1/messages"

// anthropicError is an error in Anthropic's shape:
// {"type": "error", "error": {"type": ..., "message": ...}}.
type anthropicError struct {
	Status  int
	Type    string
	Message string
}

func (e *anthropicError) Error() string { return e.Type + ": " + e.Message }

// anthropicErrorType is Anthropic's error type for an HTTP status.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusUnprocessableEntity:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable:
		return "overloaded_error"
	}
	if status >= 400 && status < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

// toAnthropicError answers any error of the endpoint from the table in
// host/apierr (or the OpenAI surface's own answer to it: an unknown
// model, an unsupported parameter), in Anthropic's shape.
func toAnthropicError(err error) *anthropicError {
	if ae, ok := err.(*anthropicError); ok {
		return ae
	}
	oe := toOpenAIError(err)
	return &anthropicError{Status: oe.Status, Type: anthropicErrorType(oe.Status), Message: oe.Message}
}

func writeAnthropicError(c *fiber.Ctx, e *anthropicError) error {
	return c.Status(e.Status).JSON(fiber.Map{"type": "error", "error": fiber.Map{"type": e.Type, "message": e.Message}})
}

func badAnthropicRequest(msg string) *anthropicError {
	return &anthropicError{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: msg}
}

// isAnthropicPath reports whether path is the Messages API's.
func isAnthropicPath(path string) bool {
	return strings.EqualFold(strings.TrimSuffix(path, "/"), routeMessages)
}

// anthropicAuth takes the API key from x-api-key (as Anthropic's SDKs
// send it) or a bearer token, and answers every error in Anthropic's
// shape.
func (s *Server) anthropicAuth(c *fiber.Ctx) error {
	h := &c.Request().Header
	if len(h.Peek(fiber.HeaderAuthorization)) == 0 {
		if key := h.Peek("X-Api-Key"); len(key) > 0 {
			h.Set(fiber.HeaderAuthorization, "Bearer "+string(key))
		}
	}
	err := s.gatewayAuth(c)
	if err == nil {
		return nil
	}
	return writeAnthropicError(c, toAnthropicError(err))
}

// messagesParams lists the Messages API's top-level parameters: "" read
// (and passed on, or refused by value); "null" accepted only as null
// (never passed on). Any other is refused by name.
var messagesParams = map[string]string{
	"model": "", "messages": "", "max_tokens": "", "system": "", "stream": "", "temperature": "",
	"top_p": "", "stop_sequences": "", "metadata": "",
	"tools": "", "tool_choice": "",
	"top_k": "null", "thinking": "null", "service_tier": "null",
	"container": "null", "mcp_servers": "null", "context_management": "null", "inference_geo": "null", "speed": "null",
	"cache_control": "null", "diagnostics": "null", "output_config": "null",
}

// messagesRequest is a parsed /v1/messages body.
type messagesRequest struct {
	Model       string
	MaxTokens   int
	Messages    []llm.Message
	Stream      bool
	Temperature *float64
	Params      llm.Params
	User        string
}

// maxMessagesBlocks bounds the content blocks of one message.
const maxMessagesBlocks = 1024

// parseMessagesRequest reads a Messages API body. Content is a string or
// text blocks; any other block type, an unknown parameter or one the
// gateway never passes on with a value is refused with its name.
func parseMessagesRequest(body []byte) (messagesRequest, *anthropicError) {
	var r messagesRequest
	fields, names, problem := jsonFields(body)
	if problem != "" {
		return r, badAnthropicRequest("the body is not one JSON object: " + problem)
	}
	for _, k := range names {
		how, known := messagesParams[k]
		if !known {
			return r, badAnthropicRequest(k + ": Extra inputs are not permitted")
		}
		if how == "null" && strings.TrimSpace(string(fields[k])) != "null" {
			return r, badAnthropicRequest(k + ": not supported by this gateway")
		}
	}
	str := func(k string, out *string) *anthropicError {
		if v, ok := fields[k]; ok && string(v) != "null" {
			if json.Unmarshal(v, out) != nil {
				return badAnthropicRequest(k + ": must be a string")
			}
		}
		return nil
	}
	if e := str("model", &r.Model); e != nil {
		return r, e
	}
	if r.Model == "" {
		return r, badAnthropicRequest("model: Field required")
	}
	var maxTokens *int64
	if v, ok := fields["max_tokens"]; ok && json.Unmarshal(v, &maxTokens) != nil {
		return r, badAnthropicRequest("max_tokens: must be an integer")
	}
	if maxTokens == nil {
		return r, badAnthropicRequest("max_tokens: Field required")
	}
	if *maxTokens < 1 || *maxTokens > 1<<20 {
		return r, badAnthropicRequest("max_tokens: must be at least 1 and at most 1048576")
	}
	r.MaxTokens = int(*maxTokens)
	if v, ok := fields["stream"]; ok && string(v) != "null" && json.Unmarshal(v, &r.Stream) != nil {
		return r, badAnthropicRequest("stream: must be true or false")
	}
	num := func(k string, lo, hi float64) (*float64, *anthropicError) {
		v, ok := fields[k]
		if !ok || string(v) == "null" {
			return nil, nil
		}
		var f float64
		if json.Unmarshal(v, &f) != nil || f < lo || f > hi {
			return nil, badAnthropicRequest(fmt.Sprintf("%s: must be a number from %g to %g", k, lo, hi))
		}
		return &f, nil
	}
	var e *anthropicError
	if r.Temperature, e = num("temperature", 0, 1); e != nil {
		return r, e
	}
	if r.Params.TopP, e = num("top_p", 0, 1); e != nil {
		return r, e
	}
	if v, ok := fields["stop_sequences"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &r.Params.Stop) != nil || len(r.Params.Stop) > maxStopSequences {
			return r, badAnthropicRequest(fmt.Sprintf("stop_sequences: must be a list of at most %d strings", maxStopSequences))
		}
	}
	if v, ok := fields["metadata"]; ok && string(v) != "null" {
		var md struct {
			UserID *string `json:"user_id"`
		}
		if json.Unmarshal(v, &md) != nil {
			return r, badAnthropicRequest("metadata: must be an object")
		}
		if md.UserID != nil {
			r.User = *md.UserID
		}
	}
	if v, ok := fields["system"]; ok && string(v) != "null" {
		text, err := anthropicText(v, "system")
		if err != nil {
			return r, err
		}
		if text != "" {
			r.Messages = append(r.Messages, llm.Message{Role: llm.RoleSystem, Content: text})
		}
	}
	var msgs []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if v, ok := fields["messages"]; !ok || json.Unmarshal(v, &msgs) != nil {
		return r, badAnthropicRequest("messages: Field required (a list of messages)")
	}
	if len(msgs) == 0 || len(msgs) > maxCompletionMessages {
		return r, badAnthropicRequest(fmt.Sprintf("messages: must hold 1 to %d messages", maxCompletionMessages))
	}
	if e := parseAnthropicTools(fields, &r.Params); e != nil {
		return r, e
	}
	for i, m := range msgs {
		at := "messages." + strconv.Itoa(i)
		if m.Role != llm.RoleUser && m.Role != llm.RoleAssistant {
			return r, badAnthropicRequest(at + ".role: must be user or assistant")
		}
		out, err := anthropicMessage(m.Role, m.Content, at+".content")
		if err != nil {
			return r, err
		}
		r.Messages = append(r.Messages, out...)
	}
	return r, nil
}

// parseAnthropicTools reads tools (client tools: name, description,
// input_schema) and tool_choice (auto, any, tool, none;
// disable_parallel_tool_use) into p. Anthropic's server tools (a type
// such as web_search_…) are refused by name.
func parseAnthropicTools(fields map[string]json.RawMessage, p *llm.Params) *anthropicError {
	if v, ok := fields["tools"]; ok && string(v) != "null" {
		var tools []struct {
			Type        *string         `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"input_schema"`
		}
		if json.Unmarshal(v, &tools) != nil {
			return badAnthropicRequest("tools: must be a list of tools")
		}
		if len(tools) > maxTools {
			return badAnthropicRequest(fmt.Sprintf("tools: at most %d tools", maxTools))
		}
		names := map[string]bool{}
		for i, t := range tools {
			at := "tools." + strconv.Itoa(i)
			if t.Type != nil && *t.Type != "custom" {
				return badAnthropicRequest(fmt.Sprintf("%s.type: tool type %q is not supported by this gateway; only client tools", at, *t.Type))
			}
			if !validToolName(t.Name) {
				return badAnthropicRequest(at + ".name: a tool name is 1 to 64 letters, digits, underscores or dashes")
			}
			if names[t.Name] {
				return badAnthropicRequest(at + ".name: tool names must be unique")
			}
			names[t.Name] = true
			schema := bytes.TrimSpace(t.InputSchema)
			if len(schema) == 0 || schema[0] != '{' {
				return badAnthropicRequest(at + ".input_schema: Field required (a JSON Schema object)")
			}
			p.Tools = append(p.Tools, llm.Tool{Name: t.Name, Description: t.Description, Parameters: json.RawMessage(schema)})
		}
	}
	v, ok := fields["tool_choice"]
	if !ok || string(v) == "null" {
		return nil
	}
	var tc struct {
		Type                   string `json:"type"`
		Name                   string `json:"name"`
		DisableParallelToolUse *bool  `json:"disable_parallel_tool_use"`
	}
	if json.Unmarshal(v, &tc) != nil {
		return badAnthropicRequest("tool_choice: must be an object")
	}
	switch tc.Type {
	case "auto":
		p.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceAuto}
	case "any":
		p.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceRequired}
	case "tool":
		if !slices.ContainsFunc(p.Tools, func(t llm.Tool) bool { return t.Name == tc.Name }) {
			return badAnthropicRequest("tool_choice.name: names a tool that tools does not offer")
		}
		p.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceFunction, Name: tc.Name}
	case "none":
		if len(p.Tools) > 0 {
			p.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceNone}
		}
		return nil
	default:
		return badAnthropicRequest("tool_choice.type: must be auto, any, tool or none")
	}
	if len(p.Tools) == 0 {
		return badAnthropicRequest("tool_choice: needs tools")
	}
	if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
		no := false
		p.ParallelToolCalls = &no
	}
	return nil
}

// anthropicMessage reads one message's content: a string, or blocks of
// text, tool_use (an assistant's calls) and tool_result (a user's answers
// to them, each becoming a tool message before the user's text).
func anthropicMessage(role string, v json.RawMessage, at string) ([]llm.Message, *anthropicError) {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return []llm.Message{{Role: role, Content: s}}, nil
	}
	var blocks []struct {
		Type      string          `json:"type"`
		Text      *string         `json:"text"`
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Input     json.RawMessage `json:"input"`
		ToolUseID string          `json:"tool_use_id"`
		Content   json.RawMessage `json:"content"`
		IsError   bool            `json:"is_error"`
	}
	if json.Unmarshal(v, &blocks) != nil {
		return nil, badAnthropicRequest(at + ": must be a string or a list of content blocks")
	}
	if len(blocks) > maxMessagesBlocks {
		return nil, badAnthropicRequest(fmt.Sprintf("%s: at most %d content blocks", at, maxMessagesBlocks))
	}
	var out []llm.Message
	main := llm.Message{Role: role}
	var text strings.Builder
	for j, bl := range blocks {
		bat := at + "." + strconv.Itoa(j)
		switch {
		case bl.Type == "text" && bl.Text != nil:
			if text.Len() > 0 {
				text.WriteString("\n\n")
			}
			text.WriteString(*bl.Text)
		case bl.Type == "tool_use" && role == llm.RoleAssistant:
			input := bytes.TrimSpace(bl.Input)
			if bl.ID == "" || !validToolName(bl.Name) || len(input) == 0 || input[0] != '{' {
				return nil, badAnthropicRequest(bat + ": a tool_use block needs an id, a tool name and an input object")
			}
			if len(main.ToolCalls) >= maxToolCallsPerMsg {
				return nil, badAnthropicRequest(fmt.Sprintf("%s: at most %d tool_use blocks per message", at, maxToolCallsPerMsg))
			}
			main.ToolCalls = append(main.ToolCalls, llm.ToolCall{ID: bl.ID, Name: bl.Name, Arguments: string(input)})
		case bl.Type == "tool_result" && role == llm.RoleUser:
			if bl.ToolUseID == "" {
				return nil, badAnthropicRequest(bat + ".tool_use_id: Field required")
			}
			result := ""
			if len(bl.Content) > 0 && string(bl.Content) != "null" {
				var err *anthropicError
				if result, err = anthropicText(bl.Content, bat+".content"); err != nil {
					return nil, err
				}
			}
			if bl.IsError {
				result = "error: " + result
			}
			out = append(out, llm.Message{Role: llm.RoleTool, ToolCallID: bl.ToolUseID, Content: result})
		default:
			return nil, badAnthropicRequest(fmt.Sprintf("%s.type: %q content blocks are not supported by this gateway in a %s message", bat, bl.Type, role))
		}
	}
	main.Content = text.String()
	if main.Content != "" || len(main.ToolCalls) > 0 || len(out) == 0 {
		out = append(out, main)
	}
	return out, nil
}

// anthropicText reads content at (a string or a list of text blocks) as
// one text.
func anthropicText(v json.RawMessage, at string) (string, *anthropicError) {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, nil
	}
	var blocks []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if json.Unmarshal(v, &blocks) != nil {
		return "", badAnthropicRequest(at + ": must be a string or a list of content blocks")
	}
	if len(blocks) > maxMessagesBlocks {
		return "", badAnthropicRequest(fmt.Sprintf("%s: at most %d content blocks", at, maxMessagesBlocks))
	}
	var b strings.Builder
	for j, bl := range blocks {
		if bl.Type != "text" || bl.Text == nil {
			return "", badAnthropicRequest(fmt.Sprintf("%s.%d.type: only text content blocks are supported by this gateway, not %q", at, j, bl.Type))
		}
		if j > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(*bl.Text)
	}
	return b.String(), nil
}

// anthropicStopReason is Anthropic's stop_reason for a provider's stop
// reason.
func anthropicStopReason(stop string) string {
	switch llm.FinishReason(stop) {
	case llm.FinishLength:
		return "max_tokens"
	case llm.FinishToolCalls:
		return "tool_use"
	case llm.FinishContentFilter:
		return "refusal"
	}
	if stop == "stop_sequence" {
		return "stop_sequence"
	}
	return "end_turn"
}

// anthropicToolUse is a tool call as Anthropic's tool_use block; input
// that is not a JSON object (a model's malformed arguments) becomes {}.
func anthropicToolUse(tc llm.ToolCall) fiber.Map {
	input := json.RawMessage(strings.TrimSpace(tc.Arguments))
	if len(input) == 0 || input[0] != '{' || !json.Valid(input) {
		input = json.RawMessage("{}")
	}
	id := tc.ID
	if id == "" {
		id = "toolu_" + messageID()[4:]
	}
	return fiber.Map{"type": "tool_use", "id": id, "name": tc.Name, "input": input}
}

func messageID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "msg_" + hex.EncodeToString(b[:])
}

func anthropicUsage(u llm.Usage) fiber.Map {
	return fiber.Map{"input_tokens": u.InputTokens, "output_tokens": u.OutputTokens,
		"cache_read_input_tokens": u.CacheReadTokens, "cache_creation_input_tokens": u.CacheWriteTokens}
}

// messages is POST /v1/messages: Anthropic's Messages API, plain or
// streamed, over the gateway's pipeline (model "auto" routed and
// compressed, a tier name that tier, a tier's model that model).
func (s *Server) messages(c *fiber.Ctx) error {
	req, ae := parseMessagesRequest(c.Body())
	if ae != nil {
		return writeAnthropicError(c, ae)
	}
	me, _ := userID(c)
	user := strconv.FormatInt(me, 10)
	if req.User != "" {
		user += ":" + req.User
	}
	began := time.Now()
	timing := &chat.Timing{}
	creq := chat.CompletionRequest{Model: req.Model, Messages: req.Messages, MaxTokens: req.MaxTokens, Temperature: req.Temperature,
		User: user, Params: req.Params, Timing: timing}
	id := messageID()
	kc, err := s.admitKey(c, "messages", id, &creq)
	if err != nil {
		return writeAnthropicError(c, toAnthropicError(err))
	}
	if !req.Stream {
		comp, err := kc.complete(c.UserContext(), s.deps.Chat, creq)
		if err != nil {
			return writeAnthropicError(c, toAnthropicError(err))
		}
		setWingateHeaders(c, comp)
		c.Set(headerServerTiming, serverTiming(timing.Route, timing.Compress, timing.FirstToken, timing.Provider, "total", time.Since(began)))
		resp := comp.Response
		content := []fiber.Map{}
		if resp.Text != "" || len(resp.ToolCalls) == 0 {
			content = append(content, fiber.Map{"type": "text", "text": resp.Text})
		}
		for _, tc := range resp.ToolCalls {
			content = append(content, anthropicToolUse(tc))
		}
		return c.JSON(fiber.Map{
			"id": id, "type": "message", "role": "assistant", "model": resp.Model,
			"content":     content,
			"stop_reason": anthropicStopReason(resp.StopReason), "stop_sequence": nil,
			"usage": anthropicUsage(resp.Usage),
		})
	}
	st := s.gatewayStream(creq, kc)
	first := st.first()
	if first.err != nil {
		st.drain()
		return writeAnthropicError(c, toAnthropicError(first.err))
	}
	c.Set(headerServerTiming, serverTiming(timing.Route, timing.Compress, timing.FirstToken, 0, "first-byte", time.Since(began)))
	setSSEHeaders(c)
	model := req.Model
	log := s.log
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		started := false
		start := func(mdl string) {
			if started {
				return
			}
			started = true
			writeSSE(w, "message_start", fiber.Map{"type": "message_start", "message": fiber.Map{
				"id": id, "type": "message", "role": "assistant", "model": mdl, "content": []any{},
				"stop_reason": nil, "stop_sequence": nil, "usage": fiber.Map{"input_tokens": 0, "output_tokens": 0}}})
			writeSSE(w, "content_block_start", fiber.Map{"type": "content_block_start", "index": 0,
				"content_block": fiber.Map{"type": "text", "text": ""}})
			writeSSE(w, "ping", fiber.Map{"type": "ping"})
		}
		write := func(ev streamEvent) bool {
			if !ev.final {
				if ev.model != "" {
					model = ev.model
				}
				start(model)
				writeSSE(w, "content_block_delta", fiber.Map{"type": "content_block_delta", "index": 0,
					"delta": fiber.Map{"type": "text_delta", "text": ev.delta}})
				return w.Flush() == nil
			}
			if ev.err != nil {
				// The stream has started: an error event, as Anthropic
				// sends one.
				e := toAnthropicError(ev.err)
				log.Warn("messages stream failed", "err", ev.err)
				writeSSE(w, "error", fiber.Map{"type": "error", "error": fiber.Map{"type": e.Type, "message": e.Message}})
				return w.Flush() == nil
			}
			comp := ev.result.(*chat.Completion)
			resp := comp.Response
			start(resp.Model)
			writeSSE(w, "content_block_stop", fiber.Map{"type": "content_block_stop", "index": 0})
			for i, tc := range resp.ToolCalls {
				// Each call in one block after the text: its input whole
				// in one input_json_delta.
				block := anthropicToolUse(tc)
				input := block["input"]
				block["input"] = fiber.Map{}
				writeSSE(w, "content_block_start", fiber.Map{"type": "content_block_start", "index": i + 1, "content_block": block})
				writeSSE(w, "content_block_delta", fiber.Map{"type": "content_block_delta", "index": i + 1,
					"delta": fiber.Map{"type": "input_json_delta", "partial_json": string(input.(json.RawMessage))}})
				writeSSE(w, "content_block_stop", fiber.Map{"type": "content_block_stop", "index": i + 1})
			}
			writeSSE(w, "message_delta", fiber.Map{"type": "message_delta",
				"delta": fiber.Map{"stop_reason": anthropicStopReason(resp.StopReason), "stop_sequence": nil},
				"usage": anthropicUsage(resp.Usage)})
			writeSSE(w, "message_stop", fiber.Map{"type": "message_stop"})
			return w.Flush() == nil
		}
		st.pump(first, false, write)
	})
	return nil
}
