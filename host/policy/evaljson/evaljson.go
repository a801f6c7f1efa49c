// Package evaljson converts between the offline-evaluation JSON shapes of
// docs/design.md and the sdk/abi types, for `wingate policy eval`, `wingate
// policy test` and the case files of package policytest.
//
// The JSON here belongs to the author tools only: host and guest speak the
// binary encoding of package abi.
//
// Parsing is strict: unknown fields, wrong types, out-of-range enum names
// and trailing data are errors, and every error names the field. Fields
// left out take the zero value, except those documented on each type.
//
//	route in:     {"message": "...", "purpose": "chat"|"assessment", "history_turns": 0, "history_tokens": 0}
//	route out:    {"tier": "economy"|"standard"|"premium", "score": 0.0-1.0, "reason": "..."}
//	compress in:  {"messages": [{"id": "...", "role": "user"|"assistant"|"system", "text": "...", "tokens": 12}],
//	               "query": "...", "budget_tokens": 1500}
//	compress out: {"keep": ["id", ...], "summary": "...", "tokens": 1480}
//	cache in:     {"method": "GET", "route": "/api/users/:id/reputation", "path": "/api/users/42/reputation",
//	               "query": "", "user": "42"}
//	cache out:    {"action": "lookup"|"bypass", "key": "...", "ttl_s": 900, "scope": "user"|"global",
//	               "stale_s": 60, "tags": ["user:42"]}
//
// On the wire a compress decision keeps message indexes; in JSON it keeps
// message ids, so converting a compress decision needs its request.
package evaljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/wingman-app/wingate/sdk/abi"
)

// MaxLine bounds one JSON document (one line of eval input).
const MaxLine = 8 << 20

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("evaljson: invalid input")

// RouteIn is the JSON form of abi.RouteRequest. Purpose defaults to chat.
type RouteIn struct {
	Message       string `json:"message"`
	Purpose       string `json:"purpose,omitempty"`
	HistoryTurns  uint32 `json:"history_turns"`
	HistoryTokens uint32 `json:"history_tokens"`
}

// RouteOut is the JSON form of abi.RouteDecision.
type RouteOut struct {
	Tier   string  `json:"tier"`
	Score  float64 `json:"score"`
	Reason string  `json:"reason"`
}

// Message is the JSON form of abi.Message. Tokens, when left out, is
// estimated with EstimateTokens.
type Message struct {
	ID     string  `json:"id"`
	Role   string  `json:"role"`
	Text   string  `json:"text"`
	Tokens *uint32 `json:"tokens,omitempty"`
}

// CompressIn is the JSON form of abi.CompressRequest. Message ids must be
// unique and non-empty, since decisions name kept messages by id.
type CompressIn struct {
	Messages     []Message `json:"messages"`
	Query        string    `json:"query"`
	BudgetTokens uint32    `json:"budget_tokens"`
}

// CompressOut is the JSON form of abi.CompressDecision.
type CompressOut struct {
	Keep    []string `json:"keep"`
	Summary string   `json:"summary"`
	Tokens  uint32   `json:"tokens"`
}

// CacheIn is the JSON form of abi.CacheRequest. Method and path are
// required; route defaults to path.
type CacheIn struct {
	Method string `json:"method"`
	Route  string `json:"route"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	User   string `json:"user"`
}

// CacheOut is the JSON form of abi.CacheDecision.
type CacheOut struct {
	Action string   `json:"action"`
	Key    string   `json:"key"`
	TTL    uint32   `json:"ttl_s"`
	Scope  string   `json:"scope"`
	Stale  uint32   `json:"stale_s"`
	Tags   []string `json:"tags"`
}

// Enumeration names, indexed by the abi value.
var (
	purposeNames = []string{"chat", "assessment"}
	tierNames    = tierStrings()
	roleNames    = []string{"user", "assistant", "system"}
	actionNames  = []string{"bypass", "lookup"}
	scopeNames   = []string{"global", "user"}
)

// tierStrings returns the tier names in ABI order from abi.Tier.String.
func tierStrings() []string {
	out := make([]string, len(abi.Tiers))
	for i, t := range abi.Tiers {
		out[i] = t.String()
	}
	return out
}

func enum(field string, names []string, s string) (uint8, error) {
	for i, n := range names {
		if n == s {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %s: %q is not one of %s", ErrInvalid, field, s, strings.Join(names, ", "))
}

func name(names []string, v uint8) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("invalid(%d)", v)
}

// strict decodes exactly one JSON object from data into v, rejecting
// unknown fields and trailing data, with errors that name the field.
func strict(data []byte, v any) error {
	if len(data) > MaxLine {
		return fmt.Errorf("%w: document of %d bytes exceeds %d", ErrInvalid, len(data), MaxLine)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("%w: want a JSON object", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, describe(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the object", ErrInvalid)
	}
	return nil
}

// describe rewrites encoding/json errors so that they lead with the field.
func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("%s: want %s, got JSON %s", field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d: %v", se.Offset, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "syntax error: unexpected end of input"
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Sprintf("unknown field %s", f)
	}
	return strings.TrimPrefix(msg, "json: ")
}

// hasKey reports whether the top-level object in data has key. It is used
// for required fields, whose zero value is valid once present.
func hasKey(data []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

// EstimateTokens estimates the tokens of text when a case leaves them out:
// one token per four bytes, rounded up, as for English prose.
func EstimateTokens(text string) uint32 { return uint32((len(text) + 3) / 4) }

// ParseRouteRequest parses a route request; message is required.
func ParseRouteRequest(data []byte) (abi.RouteRequest, error) {
	var j RouteIn
	if err := strict(data, &j); err != nil {
		return abi.RouteRequest{}, err
	}
	if !hasKey(data, "message") {
		return abi.RouteRequest{}, fmt.Errorf("%w: message: required", ErrInvalid)
	}
	return j.ABI()
}

// ABI converts j to its abi form.
func (j RouteIn) ABI() (abi.RouteRequest, error) {
	r := abi.RouteRequest{Message: j.Message, HistoryTurns: j.HistoryTurns, HistoryTokens: j.HistoryTokens}
	if j.Purpose != "" {
		p, err := enum("purpose", purposeNames, j.Purpose)
		if err != nil {
			return r, err
		}
		r.Purpose = abi.Purpose(p)
	}
	return r, nil
}

// RouteRequestJSON returns the JSON form of r.
func RouteRequestJSON(r *abi.RouteRequest) RouteIn {
	return RouteIn{Message: r.Message, Purpose: name(purposeNames, uint8(r.Purpose)), HistoryTurns: r.HistoryTurns, HistoryTokens: r.HistoryTokens}
}

// ParseRouteDecision parses a route decision; tier is required and score
// must lie in [0, 1].
func ParseRouteDecision(data []byte) (abi.RouteDecision, error) {
	var j RouteOut
	if err := strict(data, &j); err != nil {
		return abi.RouteDecision{}, err
	}
	return j.ABI()
}

// ABI converts j to its abi form.
func (j RouteOut) ABI() (abi.RouteDecision, error) {
	t, err := enum("tier", tierNames, j.Tier)
	if err != nil {
		return abi.RouteDecision{}, err
	}
	if !(j.Score >= 0 && j.Score <= 1) {
		return abi.RouteDecision{}, fmt.Errorf("%w: score: %v is outside [0, 1]", ErrInvalid, j.Score)
	}
	return abi.RouteDecision{Tier: abi.Tier(t), Score: j.Score, Reason: j.Reason}, nil
}

// RouteDecisionJSON returns the JSON form of d.
func RouteDecisionJSON(d *abi.RouteDecision) RouteOut {
	s := d.Score
	if math.IsNaN(s) || math.IsInf(s, 0) {
		s = -1 // not representable in JSON; -1 shows it is invalid
	}
	return RouteOut{Tier: name(tierNames, uint8(d.Tier)), Score: s, Reason: d.Reason}
}

// ParseCompressRequest parses a compress request.
func ParseCompressRequest(data []byte) (abi.CompressRequest, error) {
	var j CompressIn
	if err := strict(data, &j); err != nil {
		return abi.CompressRequest{}, err
	}
	if !hasKey(data, "budget_tokens") {
		return abi.CompressRequest{}, fmt.Errorf("%w: budget_tokens: required", ErrInvalid)
	}
	return j.ABI()
}

// ABI converts j to its abi form.
func (j CompressIn) ABI() (abi.CompressRequest, error) {
	r := abi.CompressRequest{Query: j.Query, BudgetTokens: j.BudgetTokens}
	if len(j.Messages) > abi.MaxListLen {
		return r, fmt.Errorf("%w: messages: %d messages exceed %d", ErrInvalid, len(j.Messages), abi.MaxListLen)
	}
	seen := make(map[string]int, len(j.Messages))
	r.Messages = make([]abi.Message, 0, len(j.Messages))
	for i, m := range j.Messages {
		if m.ID == "" {
			return r, fmt.Errorf("%w: messages[%d].id: required", ErrInvalid, i)
		}
		if k, dup := seen[m.ID]; dup {
			return r, fmt.Errorf("%w: messages[%d].id: %q repeats messages[%d].id", ErrInvalid, i, m.ID, k)
		}
		seen[m.ID] = i
		role, err := enum(fmt.Sprintf("messages[%d].role", i), roleNames, m.Role)
		if err != nil {
			return r, err
		}
		tok := EstimateTokens(m.Text)
		if m.Tokens != nil {
			tok = *m.Tokens
		}
		r.Messages = append(r.Messages, abi.Message{ID: m.ID, Role: abi.Role(role), Text: m.Text, Tokens: tok})
	}
	return r, nil
}

// CompressRequestJSON returns the JSON form of r.
func CompressRequestJSON(r *abi.CompressRequest) CompressIn {
	j := CompressIn{Messages: make([]Message, 0, len(r.Messages)), Query: r.Query, BudgetTokens: r.BudgetTokens}
	for _, m := range r.Messages {
		tok := m.Tokens
		j.Messages = append(j.Messages, Message{ID: m.ID, Role: name(roleNames, uint8(m.Role)), Text: m.Text, Tokens: &tok})
	}
	return j
}

// ParseCompressDecision parses a compress decision made for req: every
// kept id must name one of req's messages, at most once.
func ParseCompressDecision(data []byte, req *abi.CompressRequest) (abi.CompressDecision, error) {
	var j CompressOut
	if err := strict(data, &j); err != nil {
		return abi.CompressDecision{}, err
	}
	return j.ABI(req)
}

// ABI converts j to its abi form, mapping ids to indexes of req.Messages
// in ascending order.
func (j CompressOut) ABI(req *abi.CompressRequest) (abi.CompressDecision, error) {
	d := abi.CompressDecision{Summary: j.Summary, Tokens: j.Tokens}
	index := make(map[string]int, len(req.Messages))
	for i, m := range req.Messages {
		index[m.ID] = i
	}
	kept := make([]bool, len(req.Messages))
	for n, id := range j.Keep {
		i, ok := index[id]
		if !ok {
			return d, fmt.Errorf("%w: keep[%d]: %q is not the id of a message of the request", ErrInvalid, n, id)
		}
		if kept[i] {
			return d, fmt.Errorf("%w: keep[%d]: %q is kept twice", ErrInvalid, n, id)
		}
		kept[i] = true
	}
	for i, k := range kept {
		if k {
			d.Keep = append(d.Keep, uint32(i))
		}
	}
	return d, nil
}

// CompressDecisionJSON returns the JSON form of d, a decision made for
// req. An index outside req.Messages is an error.
func CompressDecisionJSON(d *abi.CompressDecision, req *abi.CompressRequest) (CompressOut, error) {
	j := CompressOut{Keep: make([]string, 0, len(d.Keep)), Summary: d.Summary, Tokens: d.Tokens}
	for n, i := range d.Keep {
		if int(i) >= len(req.Messages) {
			return j, fmt.Errorf("evaljson: keep[%d]: index %d is outside the request's %d messages", n, i, len(req.Messages))
		}
		j.Keep = append(j.Keep, req.Messages[i].ID)
	}
	return j, nil
}

// ParseCacheRequest parses a cache request; method and path are required.
func ParseCacheRequest(data []byte) (abi.CacheRequest, error) {
	var j CacheIn
	if err := strict(data, &j); err != nil {
		return abi.CacheRequest{}, err
	}
	return j.ABI()
}

// ABI converts j to its abi form.
func (j CacheIn) ABI() (abi.CacheRequest, error) {
	if j.Method == "" {
		return abi.CacheRequest{}, fmt.Errorf("%w: method: required", ErrInvalid)
	}
	if j.Path == "" {
		return abi.CacheRequest{}, fmt.Errorf("%w: path: required", ErrInvalid)
	}
	r := abi.CacheRequest{Method: strings.ToUpper(j.Method), Route: j.Route, Path: j.Path, Query: strings.TrimPrefix(j.Query, "?"), User: j.User}
	if r.Route == "" {
		r.Route = r.Path
	}
	return r, nil
}

// CacheRequestJSON returns the JSON form of r.
func CacheRequestJSON(r *abi.CacheRequest) CacheIn {
	return CacheIn{Method: r.Method, Route: r.Route, Path: r.Path, Query: r.Query, User: r.User}
}

// ParseCacheDecision parses a cache decision; action is required, scope
// defaults to global.
func ParseCacheDecision(data []byte) (abi.CacheDecision, error) {
	var j CacheOut
	if err := strict(data, &j); err != nil {
		return abi.CacheDecision{}, err
	}
	return j.ABI()
}

// ABI converts j to its abi form.
func (j CacheOut) ABI() (abi.CacheDecision, error) {
	a, err := enum("action", actionNames, j.Action)
	if err != nil {
		return abi.CacheDecision{}, err
	}
	d := abi.CacheDecision{Action: abi.CacheAction(a), Key: j.Key, TTLSeconds: j.TTL, StaleSeconds: j.Stale, Tags: j.Tags}
	if j.Scope != "" {
		s, err := enum("scope", scopeNames, j.Scope)
		if err != nil {
			return d, err
		}
		d.Scope = abi.Scope(s)
	}
	if len(d.Tags) > abi.MaxListLen {
		return d, fmt.Errorf("%w: tags: %d tags exceed %d", ErrInvalid, len(d.Tags), abi.MaxListLen)
	}
	return d, nil
}

// CacheDecisionJSON returns the JSON form of d.
func CacheDecisionJSON(d *abi.CacheDecision) CacheOut {
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	return CacheOut{Action: name(actionNames, uint8(d.Action)), Key: d.Key, TTL: d.TTLSeconds, Scope: name(scopeNames, uint8(d.Scope)), Stale: d.StaleSeconds, Tags: tags}
}
