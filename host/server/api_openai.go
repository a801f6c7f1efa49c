package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/apierr"
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
	return &openAIError{Status: fiber.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: msg, Code: string(apierr.Invalid)}
}

// unsupportedParam refuses a parameter the gateway does not pass on:
// never dropped without a word.
func unsupportedParam(param, msg string) *openAIError {
	e := apierr.New(apierr.Unsupported)
	return &openAIError{Status: e.Status, Type: "invalid_request_error", Param: param, Message: msg, Code: e.Code}
}

// modelNotFound answers a model the gateway does not serve.
func modelNotFound(param string) *openAIError {
	e := apierr.New(apierr.ModelNotFound)
	return &openAIError{Status: e.Status, Type: "invalid_request_error", Param: param, Message: e.Message, Code: e.Code}
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
	var ue *chat.UnsupportedError
	if errors.As(err, &ue) {
		return unsupportedParam(ue.Param, fmt.Sprintf("'%s' is not supported by the provider %s that this model may be answered by", ue.Param, ue.Provider))
	}
	if errors.Is(err, chat.ErrModelNotFound) {
		return modelNotFound("model")
	}
	ae, _ := apiError(err)
	typ, code := ae.OpenAIType()
	return &openAIError{Status: ae.Status, Type: typ, Message: ae.Message, Code: code}
}

// openAIAuth is requireAuth with errors (its own and the handler's) in
// OpenAI's shape, so OpenAI SDKs surface them properly. The API key is a
// virtual key or a Wingate user token (gatewayAuth).
func (s *Server) openAIAuth(c *fiber.Ctx) error {
	err := s.gatewayAuth(c)
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
	// Params are passed to the provider, which must take them (the chat
	// service refuses those it does not).
	Params llm.Params
}

type rawCompletionBody struct {
	Model         *string      `json:"model"`
	Messages      []rawMessage `json:"messages"`
	Stream        *bool        `json:"stream"`
	StreamOptions *struct {
		IncludeUsage       *bool `json:"include_usage"`
		IncludeObfuscation *bool `json:"include_obfuscation"`
	} `json:"stream_options"`
	Temperature         *float64           `json:"temperature"`
	TopP                *float64           `json:"top_p"`
	FrequencyPenalty    *float64           `json:"frequency_penalty"`
	PresencePenalty     *float64           `json:"presence_penalty"`
	MaxTokens           *int64             `json:"max_tokens"`
	MaxCompletionTokens *int64             `json:"max_completion_tokens"`
	N                   *int64             `json:"n"`
	Seed                *int64             `json:"seed"`
	User                *string            `json:"user"`
	Stop                json.RawMessage    `json:"stop"`
	ResponseFormat      json.RawMessage    `json:"response_format"`
	Tools               []rawTool          `json:"tools"`
	ToolChoice          json.RawMessage    `json:"tool_choice"`
	ParallelToolCalls   *bool              `json:"parallel_tool_calls"`
	Logprobs            *bool              `json:"logprobs"`
	LogitBias           map[string]float64 `json:"logit_bias"`
	Store               *bool              `json:"store"`
	Metadata            map[string]string  `json:"metadata"`
	Modalities          []string           `json:"modalities"`
}

type rawMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  []rawToolCall   `json:"tool_calls"`
	ToolCallID *string         `json:"tool_call_id"`
}

type rawToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type rawTool struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

type rawPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Bounds on one request's input.
const (
	maxCompletionMessages = 4096
	maxTools              = 128
	maxToolCallsPerMsg    = 128
	maxStopSequences      = 4
	maxToolNameLen        = 64
)

// completionParams lists every top-level parameter of OpenAI's chat
// completions request and what the gateway does with it: "" it is read
// and passed on (or refused by value below); otherwise the parameter is
// refused unless its value is null or this neutral JSON value (or one of
// them, separated by |), which changes nothing. A parameter not listed is
// refused by name.
var completionParams = map[string]string{
	"model": "", "messages": "", "stream": "", "stream_options": "", "temperature": "", "top_p": "",
	"frequency_penalty": "", "presence_penalty": "", "max_tokens": "", "max_completion_tokens": "", "n": "",
	"seed": "", "user": "", "stop": "", "response_format": "", "tools": "", "tool_choice": "",
	"parallel_tool_calls": "", "logprobs": "", "logit_bias": "", "store": "", "metadata": "", "modalities": "",
	// never passed on: accepted only as null
	"top_logprobs": "null", "functions": "null|[]", "function_call": "null", "audio": "null", "prediction": "null",
	"service_tier": "null", "reasoning_effort": "null", "web_search_options": "null", "verbosity": "null",
	"prompt_cache_key": "null", "safety_identifier": "null",
}

// jsonFields reads body as one JSON object: its fields, and their names
// sorted (so that the first refusal of a request is the same every
// time); problem says what is wrong when body is not one object.
func jsonFields(body []byte) (fields map[string]json.RawMessage, names []string, problem string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return nil, nil, "expected a JSON object"
	}
	if dec.More() {
		return nil, nil, "trailing data"
	}
	names = make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return fields, names, ""
}

// parseCompletionRequest reads a chat completions body as the official
// OpenAI SDKs send it: content as a string or an array of text parts,
// developer messages as system ones, tools and tool messages. Every
// parameter is either read (and passed on to a provider that takes it)
// or refused with its name: an unknown one, or one the gateway never
// passes on with a value that would change the answer (logprobs,
// logit_bias, audio, ...), is unsupported_parameter; a bad value is
// invalid with the parameter named.
func parseCompletionRequest(body []byte) (completionRequest, *openAIError) {
	var r completionRequest
	unreadable := func(msg string) *openAIError {
		e := invalidParam("", msg)
		e.Code = string(apierr.InvalidBody)
		return e
	}
	fields, names, problem := jsonFields(body)
	if problem != "" {
		return r, unreadable("We could not parse the JSON body of your request: " + problem + ".")
	}
	for _, k := range names {
		neutral, known := completionParams[k]
		if !known {
			return r, unsupportedParam(k, fmt.Sprintf("Unrecognized request argument supplied: %s", k))
		}
		if neutral == "" {
			continue
		}
		v := strings.TrimSpace(string(fields[k]))
		if !slices.Contains(strings.Split(neutral, "|"), v) {
			return r, unsupportedParam(k, fmt.Sprintf("'%s' is not supported by this gateway", k))
		}
	}
	var raw rawCompletionBody
	if err := json.Unmarshal(body, &raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return r, invalidParam(te.Field, fmt.Sprintf("Invalid type for '%s': expected %s.", te.Field, te.Type))
		}
		return r, unreadable("We could not parse the JSON body of your request.")
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
	if raw.N != nil && *raw.N != 1 {
		return r, unsupportedParam("n", "only n=1 is supported")
	}
	if raw.Logprobs != nil && *raw.Logprobs {
		return r, unsupportedParam("logprobs", "'logprobs' is not supported by this gateway")
	}
	if len(raw.LogitBias) > 0 {
		return r, unsupportedParam("logit_bias", "'logit_bias' is not supported by this gateway")
	}
	if raw.Store != nil && *raw.Store {
		return r, unsupportedParam("store", "this gateway does not store completions")
	}
	if len(raw.Metadata) > 0 {
		return r, unsupportedParam("metadata", "this gateway does not store completions, so takes no metadata")
	}
	if raw.Modalities != nil && !slices.Equal(raw.Modalities, []string{"text"}) {
		return r, unsupportedParam("modalities", "only the text modality is supported")
	}
	if so := raw.StreamOptions; so != nil && so.IncludeObfuscation != nil && *so.IncludeObfuscation {
		return r, unsupportedParam("stream_options.include_obfuscation", "stream obfuscation is not supported by this gateway")
	}
	if raw.Temperature != nil {
		if *raw.Temperature < 0 || *raw.Temperature > 2 {
			return r, invalidParam("temperature", "temperature must be between 0 and 2")
		}
		r.Temperature = raw.Temperature
	}
	if raw.TopP != nil {
		if *raw.TopP < 0 || *raw.TopP > 1 {
			return r, invalidParam("top_p", "top_p must be between 0 and 1")
		}
		if *raw.TopP != 1 { // 1 is every provider's default: nothing to pass on
			r.Params.TopP = raw.TopP
		}
	}
	for _, pen := range []struct {
		name string
		v    *float64
		dst  **float64
	}{{"frequency_penalty", raw.FrequencyPenalty, &r.Params.FrequencyPenalty}, {"presence_penalty", raw.PresencePenalty, &r.Params.PresencePenalty}} {
		if pen.v == nil {
			continue
		}
		if *pen.v < -2 || *pen.v > 2 {
			return r, invalidParam(pen.name, pen.name+" must be between -2 and 2")
		}
		if *pen.v != 0 { // 0 is the default
			*pen.dst = pen.v
		}
	}
	r.Params.Seed = raw.Seed
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
	if oe := parseStop(raw.Stop, &r.Params); oe != nil {
		return r, oe
	}
	if oe := parseResponseFormat(raw.ResponseFormat, &r.Params); oe != nil {
		return r, oe
	}
	if oe := parseTools(&raw, &r.Params); oe != nil {
		return r, oe
	}
	r.Messages = make([]llm.Message, 0, len(raw.Messages))
	for i, m := range raw.Messages {
		msg, oe := parseMessage(i, &m)
		if oe != nil {
			return r, oe
		}
		r.Messages = append(r.Messages, msg)
	}
	return r, nil
}

func parseMessage(i int, m *rawMessage) (llm.Message, *openAIError) {
	param := "messages[" + strconv.Itoa(i) + "]"
	role := m.Role
	switch role {
	case "system", "developer":
		role = llm.RoleSystem
	case "user", "assistant", "tool":
	case "":
		return llm.Message{}, invalidParam(param+".role", "Missing required parameter: '"+param+".role'.")
	default:
		return llm.Message{}, invalidParam(param+".role", fmt.Sprintf("role %q is not supported by this gateway", m.Role))
	}
	if len(m.ToolCalls) > 0 && role != llm.RoleAssistant {
		return llm.Message{}, invalidParam(param+".tool_calls", "only assistant messages carry tool_calls")
	}
	if len(m.ToolCalls) > maxToolCallsPerMsg {
		return llm.Message{}, invalidParam(param+".tool_calls", fmt.Sprintf("at most %d tool calls per message", maxToolCallsPerMsg))
	}
	out := llm.Message{Role: role, Name: m.Name}
	for j, tc := range m.ToolCalls {
		p := param + ".tool_calls[" + strconv.Itoa(j) + "]"
		switch {
		case tc.Type != "function":
			return llm.Message{}, invalidParam(p+".type", "only function tool calls are supported")
		case tc.ID == "":
			return llm.Message{}, invalidParam(p+".id", "Missing required parameter: '"+p+".id'.")
		case tc.Function.Name == "":
			return llm.Message{}, invalidParam(p+".function.name", "Missing required parameter: '"+p+".function.name'.")
		}
		out.ToolCalls = append(out.ToolCalls, llm.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	if role == llm.RoleTool {
		if m.ToolCallID == nil || *m.ToolCallID == "" {
			return llm.Message{}, invalidParam(param+".tool_call_id", "Missing required parameter: '"+param+".tool_call_id'.")
		}
		out.ToolCallID = *m.ToolCallID
	} else if m.ToolCallID != nil {
		return llm.Message{}, invalidParam(param+".tool_call_id", "only tool messages carry tool_call_id")
	}
	text, oe := parseContent(m.Content, param+".content", role == llm.RoleAssistant)
	if oe != nil {
		return llm.Message{}, oe
	}
	out.Content = text
	return out, nil
}

// parseStop reads stop: a string or up to four strings.
func parseStop(b json.RawMessage, p *llm.Params) *openAIError {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "null" {
		return nil
	}
	var one string
	if json.Unmarshal(b, &one) == nil {
		p.Stop = []string{one}
	} else if err := json.Unmarshal(b, &p.Stop); err != nil {
		return invalidParam("stop", "stop must be a string or an array of strings")
	}
	if len(p.Stop) > maxStopSequences {
		return invalidParam("stop", fmt.Sprintf("stop takes at most %d sequences", maxStopSequences))
	}
	for _, seq := range p.Stop {
		if seq == "" {
			return invalidParam("stop", "a stop sequence must not be empty")
		}
	}
	if len(p.Stop) == 0 {
		p.Stop = nil
	}
	return nil
}

// parseResponseFormat reads response_format: text changes nothing;
// json_object and json_schema are passed on.
func parseResponseFormat(b json.RawMessage, p *llm.Params) *openAIError {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "null" {
		return nil
	}
	var rf struct {
		Type       string          `json:"type"`
		JSONSchema json.RawMessage `json:"json_schema"`
	}
	if err := json.Unmarshal(b, &rf); err != nil {
		return invalidParam("response_format", "response_format must be an object with a type")
	}
	switch rf.Type {
	case "text":
	case "json_object":
		p.ResponseFormat = json.RawMessage(`{"type":"json_object"}`)
	case "json_schema":
		if !strings.HasPrefix(strings.TrimSpace(string(rf.JSONSchema)), "{") {
			return invalidParam("response_format.json_schema", "Missing required parameter: 'response_format.json_schema'.")
		}
		c, err := json.Marshal(map[string]json.RawMessage{"type": json.RawMessage(`"json_schema"`), "json_schema": rf.JSONSchema})
		if err != nil {
			return invalidParam("response_format.json_schema", "response_format.json_schema is not valid JSON")
		}
		p.ResponseFormat = c
	default:
		return invalidParam("response_format.type", fmt.Sprintf("response_format type %q: want text, json_object or json_schema", rf.Type))
	}
	return nil
}

// parseTools reads tools, tool_choice and parallel_tool_calls.
func parseTools(raw *rawCompletionBody, p *llm.Params) *openAIError {
	if len(raw.Tools) > maxTools {
		return invalidParam("tools", fmt.Sprintf("at most %d tools", maxTools))
	}
	names := map[string]bool{}
	for i, t := range raw.Tools {
		param := "tools[" + strconv.Itoa(i) + "]"
		if t.Type != "function" {
			return unsupportedParam(param+".type", fmt.Sprintf("tool type %q is not supported; only function", t.Type))
		}
		if t.Function == nil {
			return invalidParam(param+".function", "Missing required parameter: '"+param+".function'.")
		}
		if !validToolName(t.Function.Name) {
			return invalidParam(param+".function.name", "a function name is 1 to 64 letters, digits, underscores or dashes")
		}
		if names[t.Function.Name] {
			return invalidParam(param+".function.name", "function names must be unique")
		}
		names[t.Function.Name] = true
		schema := strings.TrimSpace(string(t.Function.Parameters))
		if schema == "null" {
			schema = ""
		}
		if schema != "" && schema[0] != '{' {
			return invalidParam(param+".function.parameters", "parameters must be a JSON Schema object")
		}
		p.Tools = append(p.Tools, llm.Tool{Name: t.Function.Name, Description: t.Function.Description,
			Parameters: json.RawMessage(schema), Strict: t.Function.Strict})
	}
	if len(p.Tools) == 0 {
		p.Tools = nil
	}
	if s := strings.TrimSpace(string(raw.ToolChoice)); s != "" && s != "null" {
		var mode string
		var obj struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(raw.ToolChoice, &mode) == nil:
			switch mode {
			case llm.ToolChoiceNone, llm.ToolChoiceAuto, llm.ToolChoiceRequired:
				p.ToolChoice = &llm.ToolChoice{Mode: mode}
			default:
				return invalidParam("tool_choice", fmt.Sprintf("tool_choice %q: want none, auto, required or a function", mode))
			}
		case json.Unmarshal(raw.ToolChoice, &obj) == nil && obj.Type == "function":
			if !names[obj.Function.Name] {
				return invalidParam("tool_choice.function.name", "tool_choice names a function that tools does not offer")
			}
			p.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceFunction, Name: obj.Function.Name}
		case obj.Type != "":
			return unsupportedParam("tool_choice.type", fmt.Sprintf("tool_choice type %q is not supported; only function", obj.Type))
		default:
			return invalidParam("tool_choice", "tool_choice must be a string or an object")
		}
		if p.ToolChoice.Mode == llm.ToolChoiceNone {
			p.ToolChoice = nil // without tools offered or with none, no call either way
			if len(p.Tools) > 0 {
				p.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceNone}
			}
		} else if len(p.Tools) == 0 {
			return invalidParam("tool_choice", "tool_choice needs tools")
		}
	}
	if raw.ParallelToolCalls != nil && len(p.Tools) > 0 {
		p.ParallelToolCalls = raw.ParallelToolCalls
	}
	return nil
}

func validToolName(s string) bool {
	if s == "" || len(s) > maxToolNameLen {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
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

// openAIToolCalls renders tool calls as OpenAI's message.tool_calls
// (with index, as stream deltas carry them, when indexed).
func openAIToolCalls(calls []llm.ToolCall, indexed bool) []fiber.Map {
	out := make([]fiber.Map, 0, len(calls))
	for i, c := range calls {
		m := fiber.Map{"id": c.ID, "type": "function", "function": fiber.Map{"name": c.Name, "arguments": c.Arguments}}
		if indexed {
			m["index"] = i
		}
		out = append(out, m)
	}
	return out
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

// headerServerTiming carries a gateway answer's Server-Timing (W3C
// Server Timing): where its time went, in milliseconds.
const headerServerTiming = "Server-Timing"

// serverTiming renders the route decision, the compression, the
// provider's first token and (when not zero) its whole answer, and the
// gateway's own end figure (its total, or for a stream the first byte),
// in milliseconds: route;dur=0.041, compress;dur=0.2, provider-ttft;dur=12.5,
// provider;dur=40.1, total;dur=41.
func serverTiming(route, compress, ttft, provider time.Duration, end string, endDur time.Duration) string {
	b := make([]byte, 0, 128)
	add := func(name string, d time.Duration) {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, name...)
		b = append(b, ";dur="...)
		b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
	}
	add("route", route)
	add("compress", compress)
	add("provider-ttft", ttft)
	if provider > 0 {
		add("provider", provider)
	}
	add(end, endDur)
	return string(b)
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
	began := time.Now()
	timing := &chat.Timing{}
	creq := chat.CompletionRequest{Model: req.Model, Messages: req.Messages, MaxTokens: req.MaxTokens, Temperature: req.Temperature, User: user, Params: req.Params, Timing: timing}
	id := completionID()
	kc, err := s.admitKey(c, "chat.completions", id, &creq)
	if err != nil {
		return toOpenAIError(err)
	}
	created := time.Now().Unix()
	if !req.Stream {
		comp, err := kc.complete(c.UserContext(), s.deps.Chat, creq)
		if err != nil {
			return toOpenAIError(err)
		}
		setWingateHeaders(c, comp)
		c.Set(headerServerTiming, serverTiming(timing.Route, timing.Compress, timing.FirstToken, timing.Provider, "total", time.Since(began)))
		resp := comp.Response
		msg := fiber.Map{"role": "assistant", "content": resp.Text, "refusal": nil}
		if len(resp.ToolCalls) > 0 {
			msg["tool_calls"] = openAIToolCalls(resp.ToolCalls, false)
			if resp.Text == "" {
				msg["content"] = nil
			}
		}
		return c.JSON(fiber.Map{
			"id": id, "object": "chat.completion", "created": created, "model": resp.Model,
			"choices": []fiber.Map{{
				"index":         0,
				"message":       msg,
				"logprobs":      nil,
				"finish_reason": llm.FinishReason(resp.StopReason),
			}},
			"usage":              openAIUsage(resp.Usage),
			"system_fingerprint": nil,
			"wingate":            wingateInfo(comp),
		})
	}
	st := s.gatewayStream(creq, kc)
	first := st.first()
	if first.err != nil {
		st.drain()
		return toOpenAIError(first.err)
	}
	// At the first chunk the pipeline has written the route, compress
	// and first-token times (before it passed the chunk on); the
	// provider's total comes later and is not read here.
	c.Set(headerServerTiming, serverTiming(timing.Route, timing.Compress, timing.FirstToken, 0, "first-byte", time.Since(began)))
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
			if len(resp.ToolCalls) > 0 {
				// Each call whole in one delta, after any text.
				d := fiber.Map{"tool_calls": openAIToolCalls(resp.ToolCalls, true)}
				if !sentRole {
					d["role"], d["content"] = "assistant", nil
					sentRole = true
				}
				writeSSE(w, "", chunk(d, nil, resp.Model))
			}
			writeSSE(w, "", chunk(fiber.Map{}, llm.FinishReason(resp.StopReason), resp.Model))
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

// openAIModel renders a model as OpenAI's model object.
func openAIModel(m chat.Model) fiber.Map {
	return fiber.Map{"id": m.ID, "object": "model", "created": 0, "owned_by": m.OwnedBy}
}

// anthropicClient reports whether the request comes from an Anthropic
// client (its SDKs send anthropic-version): /v1/models then answers in
// Anthropic's shapes.
func anthropicClient(c *fiber.Ctx) bool { return len(c.Request().Header.Peek("Anthropic-Version")) > 0 }

// modelsAuth authenticates GET /v1/models for both kinds of client: the
// key as a bearer token or in x-api-key, errors in the client's shape.
func (s *Server) modelsAuth(c *fiber.Ctx) error {
	if anthropicClient(c) {
		return s.anthropicAuth(c)
	}
	return s.openAIAuth(c)
}

// anthropicModel renders a model as Anthropic's model object.
func anthropicModel(m chat.Model) fiber.Map {
	return fiber.Map{"type": "model", "id": m.ID, "display_name": m.ID, "created_at": "1970-01-01T00:00:00Z"}
}

// listModels is GET /v1/models: auto (the route policy decides), the
// tier names and the tiers' provider models, in OpenAI's list shape (or
// Anthropic's, for an Anthropic client).
func (s *Server) listModels(c *fiber.Ctx) error {
	models := s.deps.Chat.Models()
	data := make([]fiber.Map, 0, len(models))
	for _, m := range models {
		if anthropicClient(c) {
			data = append(data, anthropicModel(m))
		} else {
			data = append(data, openAIModel(m))
		}
	}
	if anthropicClient(c) {
		return c.JSON(fiber.Map{"data": data, "has_more": false, "first_id": models[0].ID, "last_id": models[len(models)-1].ID})
	}
	return c.JSON(fiber.Map{"object": "list", "data": data})
}

// getModel is GET /v1/models/:model.
func (s *Server) getModel(c *fiber.Ctx) error {
	m, ok := s.deps.Chat.Model(c.Params("model"))
	if anthropicClient(c) {
		if !ok {
			return writeAnthropicError(c, &anthropicError{Status: 404, Type: "not_found_error", Message: "model: no such model"})
		}
		return c.JSON(anthropicModel(m))
	}
	if !ok {
		return modelNotFound("model")
	}
	return c.JSON(openAIModel(m))
}

// isOpenAIPath reports whether path is under /v1, whose errors are in
// OpenAI's shape.
func isOpenAIPath(path string) bool { return path == "/v1" || strings.HasPrefix(path, "/v1/") }
