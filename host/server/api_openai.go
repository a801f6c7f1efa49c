package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/chat"
	"github.com/wingman-app/wingate/host/llm"
)

// openAIError is an error of the OpenAI-compatible endpoint, rendered in
// OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
type openAIError struct {
	Status  int
	Type    string // invalid_request_error, authentication_error, server_error, …
	Message string
	Param   string
	Code    string
}

func (e *openAIError) Error() string { return e.Type + ": " + e.Message }

func invalidParam(param, msg string) *openAIError {
	return &openAIError{Status: fiber.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: msg}
}

func writeOpenAIError(c *fiber.Ctx, e *openAIError) error {
	body := fiber.Map{"message": e.Message, "type": e.Type, "param": nil, "code": nil}
	if e.Param != "" {
		body["param"] = e.Param
	}
	if e.Code != "" {
		body["code"] = e.Code
	}
	return c.Status(e.Status).JSON(fiber.Map{"error": body})
}

// toOpenAIError answers any error of the endpoint (auth, chat, store) from
// the table in host/apierr, in OpenAI's shape.
func toOpenAIError(err error) *openAIError {
	var oe *openAIError
	if errors.As(err, &oe) {
		return oe
	}
	var ie *chat.InputError
	if errors.As(err, &ie) {
		return invalidParam(ie.Field, ie.Field+": "+ie.Reason)
	}
	ae, _ := apiError(err)
	typ, code := ae.OpenAIType()
	return &openAIError{Status: ae.Status, Type: typ, Message: ae.Message, Code: code}
}

// openAIAuth is requireAuth with errors (its own and the handler's) in
// OpenAI's shape, so OpenAI SDKs surface them properly. The API key is a
// Wingate bearer token.
func (s *Server) openAIAuth(c *fiber.Ctx) error {
	err := s.requireAuth(c)
	if err == nil {
		return nil
	}
	oe := toOpenAIError(err)
	if oe.Status >= 500 {
		s.log.Warn("chat completion failed", "status", oe.Status, "err", err)
	}
	return writeOpenAIError(c, oe)
}

// completionRequest is a parsed /v1/chat/completions body.
type completionRequest struct {
	Model        string
	Messages     []llm.Message
	Stream       bool
	IncludeUsage bool
	Temperature  *float64
	MaxTokens    int
	User         string
}

type rawCompletionBody struct {
	Model         *string      `json:"model"`
	Messages      []rawMessage `json:"messages"`
	Stream        *bool        `json:"stream"`
	StreamOptions *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	N                   *int64          `json:"n"`
	User                *string         `json:"user"`
	Tools               json.RawMessage `json:"tools"`
	Functions           json.RawMessage `json:"functions"`
}

type rawMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name"`
}

type rawPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// maxCompletionMessages bounds the messages of one request.
const maxCompletionMessages = 4096

// parseCompletionRequest reads a chat completions body as the official
// OpenAI SDKs send it: content as a string or an array of text parts,
// developer messages as system ones, unknown fields ignored. What the
// gateway cannot honour (tools, n > 1, non-text parts) is refused with
// the parameter named.
func parseCompletionRequest(body []byte) (completionRequest, *openAIError) {
	var r completionRequest
	var raw rawCompletionBody
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return r, invalidParam(te.Field, fmt.Sprintf("Invalid type for '%s': expected %s.", te.Field, te.Type))
		}
		return r, invalidParam("", "We could not parse the JSON body of your request.")
	}
	if dec.More() {
		return r, invalidParam("", "We could not parse the JSON body of your request: trailing data.")
	}
	if raw.Model == nil || strings.TrimSpace(*raw.Model) == "" {
		return r, invalidParam("model", "you must provide a model parameter")
	}
	r.Model = strings.TrimSpace(*raw.Model)
	if len(raw.Messages) == 0 {
		return r, invalidParam("messages", "'messages' must be a non-empty array")
	}
	if len(raw.Messages) > maxCompletionMessages {
		return r, invalidParam("messages", fmt.Sprintf("'messages' holds more than %d messages", maxCompletionMessages))
	}
	if nonEmptyJSON(raw.Tools) || nonEmptyJSON(raw.Functions) {
		return r, invalidParam("tools", "tools and functions are not supported by this gateway")
	}
	if raw.N != nil && *raw.N != 1 {
		return r, invalidParam("n", "only n=1 is supported")
	}
	if raw.Temperature != nil {
		if *raw.Temperature < 0 || *raw.Temperature > 2 {
			return r, invalidParam("temperature", "temperature must be between 0 and 2")
		}
		r.Temperature = raw.Temperature
	}
	if raw.TopP != nil && (*raw.TopP < 0 || *raw.TopP > 1) {
		return r, invalidParam("top_p", "top_p must be between 0 and 1")
	}
	for _, mt := range []struct {
		name string
		v    *int64
	}{{"max_completion_tokens", raw.MaxCompletionTokens}, {"max_tokens", raw.MaxTokens}} {
		if mt.v == nil {
			continue
		}
		if *mt.v < 1 || *mt.v > 1<<20 {
			return r, invalidParam(mt.name, mt.name+" must be a positive integer")
		}
		if r.MaxTokens == 0 {
			r.MaxTokens = int(*mt.v)
		}
	}
	if raw.Stream != nil {
		r.Stream = *raw.Stream
	}
	if raw.StreamOptions != nil && raw.StreamOptions.IncludeUsage != nil {
		r.IncludeUsage = *raw.StreamOptions.IncludeUsage
	}
	if raw.User != nil {
		r.User = *raw.User
	}
	r.Messages = make([]llm.Message, 0, len(raw.Messages))
	for i, m := range raw.Messages {
		param := "messages[" + strconv.Itoa(i) + "]"
		role := m.Role
		switch role {
		case "system", "developer":
			role = llm.RoleSystem
		case "user", "assistant":
		case "":
			return r, invalidParam(param+".role", "Missing required parameter: '"+param+".role'.")
		default:
			return r, invalidParam(param+".role", fmt.Sprintf("role %q is not supported by this gateway", m.Role))
		}
		text, oe := parseContent(m.Content, param+".content", role == llm.RoleAssistant)
		if oe != nil {
			return r, oe
		}
		r.Messages = append(r.Messages, llm.Message{Role: role, Content: text})
	}
	return r, nil
}

func nonEmptyJSON(b json.RawMessage) bool {
	s := strings.TrimSpace(string(b))
	return s != "" && s != "null" && s != "[]"
}

// parseContent reads a message's content: a string, an array of parts
// (text parts joined by newlines), or null for an assistant message.
func parseContent(b json.RawMessage, param string, nullOK bool) (string, *openAIError) {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "null" {
		if nullOK {
			return "", nil
		}
		return "", invalidParam(param, "Missing required parameter: '"+param+"'.")
	}
	switch s[0] {
	case '"':
		var text string
		if err := json.Unmarshal(b, &text); err != nil {
			return "", invalidParam(param, "Invalid value for '"+param+"': expected a string.")
		}
		return text, nil
	case '[':
		var parts []rawPart
		if err := json.Unmarshal(b, &parts); err != nil {
			return "", invalidParam(param, "Invalid value for '"+param+"': expected an array of content parts.")
		}
		var texts []string
		for j, p := range parts {
			switch p.Type {
			case "text", "input_text", "refusal":
				texts = append(texts, p.Text)
			default:
				return "", invalidParam(param+"["+strconv.Itoa(j)+"].type",
					fmt.Sprintf("content part type %q is not supported by this gateway; only text is", p.Type))
			}
		}
		return strings.Join(texts, "\n"), nil
	}
	return "", invalidParam(param, "Invalid value for '"+param+"': expected a string or an array of content parts.")
}

func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "length":
		return "length"
	case "content_filter":
		return "content_filter"
	}
	return "stop"
}

func openAIUsage(u llm.Usage) fiber.Map {
	prompt := u.TotalInput()
	return fiber.Map{
		"prompt_tokens":             prompt,
		"completion_tokens":         u.OutputTokens,
		"total_tokens":              prompt + u.OutputTokens,
		"prompt_tokens_details":     fiber.Map{"cached_tokens": u.CacheReadTokens},
		"completion_tokens_details": fiber.Map{"reasoning_tokens": 0},
	}
}

func completionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "chatcmpl-" + hex.EncodeToString(b[:])
}

// wingateInfo is the gateway's own annotation of an answer, next to the
// OpenAI fields (clients ignore unknown fields).
func wingateInfo(comp *chat.Completion) fiber.Map {
	return fiber.Map{
		"tier": comp.Tier, "provider": comp.Provider, "route": comp.Route, "compress": comp.Compress,
		"fallbacks": comp.Fallbacks, "cost_usd": comp.CostUSD, "baseline_cost_usd": comp.BaselineCostUSD,
		"context_tokens": comp.ContextTokens, "baseline_context_tokens": comp.BaselineContextTokens,
		"simulated": comp.Response.Simulated,
	}
}

func setWingateHeaders(c *fiber.Ctx, comp *chat.Completion) {
	if comp.Tier != "" {
		c.Set("X-Wingate-Tier", comp.Tier)
	}
	c.Set("X-Wingate-Cost-USD", strconv.FormatFloat(comp.CostUSD, 'f', -1, 64))
	c.Set("X-Wingate-Baseline-Cost-USD", strconv.FormatFloat(comp.BaselineCostUSD, 'f', -1, 64))
	if comp.Response.Simulated {
		c.Set("X-Wingate-Simulated", "true")
	}
}

// chatCompletions is POST /v1/chat/completions: OpenAI-compatible, plain or
// streamed. Model "auto" is routed and compressed; a tier name
// (economy, standard, premium) picks that tier; any other model is passed
// through verbatim.
func (s *Server) chatCompletions(c *fiber.Ctx) error {
	req, oe := parseCompletionRequest(c.Body())
	if oe != nil {
		return oe
	}
	me, _ := userID(c)
	uid := strconv.FormatInt(me, 10)
	user := uid
	if req.User != "" {
		user = uid + ":" + req.User
	}
	creq := chat.CompletionRequest{Model: req.Model, Messages: req.Messages, MaxTokens: req.MaxTokens, Temperature: req.Temperature, User: user}
	id := completionID()
	created := time.Now().Unix()
	if !req.Stream {
		comp, err := s.deps.Chat.Complete(c.UserContext(), creq, nil)
		if err != nil {
			return toOpenAIError(err)
		}
		setWingateHeaders(c, comp)
		resp := comp.Response
		return c.JSON(fiber.Map{
			"id": id, "object": "chat.completion", "created": created, "model": resp.Model,
			"choices": []fiber.Map{{
				"index":         0,
				"message":       fiber.Map{"role": "assistant", "content": resp.Text, "refusal": nil},
				"logprobs":      nil,
				"finish_reason": finishReason(resp.StopReason),
			}},
			"usage":              openAIUsage(resp.Usage),
			"system_fingerprint": nil,
			"wingate":            wingateInfo(comp),
		})
	}
	st := startStream(func(ctx context.Context, onDelta llm.DeltaFunc, model *string) (any, error) {
		creq.OnAttempt = func(_, m string) { *model = m }
		return s.deps.Chat.Complete(ctx, creq, onDelta)
	})
	first := st.first()
	if first.err != nil {
		st.drain()
		return toOpenAIError(first.err)
	}
	setSSEHeaders(c)
	model := req.Model
	includeUsage := req.IncludeUsage
	log := s.log
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		sentRole := false
		chunk := func(delta fiber.Map, finish any, mdl string) fiber.Map {
			m := fiber.Map{"id": id, "object": "chat.completion.chunk", "created": created, "model": mdl,
				"system_fingerprint": nil,
				"choices":            []fiber.Map{{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}}
			if includeUsage {
				m["usage"] = nil
			}
			return m
		}
		write := func(ev streamEvent) bool {
			if !ev.final {
				d := fiber.Map{"content": ev.delta}
				if !sentRole {
					d["role"] = "assistant"
					sentRole = true
				}
				if ev.model != "" {
					model = ev.model
				}
				writeSSE(w, "", chunk(d, nil, model))
				return w.Flush() == nil
			}
			if ev.err != nil {
				// The stream has started: report in-band, as OpenAI does.
				oe := toOpenAIError(ev.err)
				log.Warn("chat completion stream failed", "err", ev.err)
				writeSSE(w, "", fiber.Map{"error": fiber.Map{"message": oe.Message, "type": oe.Type, "param": nil, "code": oe.Code}})
				w.WriteString("data: [DONE]\n\n")
				return w.Flush() == nil
			}
			comp := ev.result.(*chat.Completion)
			resp := comp.Response
			writeSSE(w, "", chunk(fiber.Map{}, finishReason(resp.StopReason), resp.Model))
			if includeUsage {
				writeSSE(w, "", fiber.Map{"id": id, "object": "chat.completion.chunk", "created": created, "model": resp.Model,
					"system_fingerprint": nil, "choices": []fiber.Map{}, "usage": openAIUsage(resp.Usage), "wingate": wingateInfo(comp)})
			}
			w.WriteString("data: [DONE]\n\n")
			return w.Flush() == nil
		}
		st.pump(first, false, write)
	})
	return nil
}
