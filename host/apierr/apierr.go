// Package apierr is the one table of the errors Wingate's HTTP surfaces
// answer with: a stable code, its HTTP status and a safe message. The API
// (/api), the admin API (/admin) and the OpenAI-compatible surface
// (/v1/chat/completions) render the same Error in their own shapes (see
// JSON and OpenAI); no surface writes an error body any other way.
//
// A message is the project's own text: a table entry's, or one a handler
// wrote about the request it refused (a field and why). The text of a Go,
// driver or library error never reaches a body; the server logs it.
package apierr

import (
	"net/http"
	"strings"
)

// Code is a stable error code. Clients branch on it; it never changes
// meaning. Field errors use the family "invalid_<field>" (see Field).
type Code string

// The codes.
const (
	BadRequest       Code = "bad_request"           // the request cannot be read (not a field's fault)
	InvalidBody      Code = "invalid_body"          // the body is not the JSON the route takes
	Invalid          Code = "invalid"               // a value breaks a rule; see the message
	InvalidForm      Code = "invalid_form"          // a multipart upload cannot be read
	Unauthorized     Code = "unauthorized"          // no, or a wrong, credential
	TokenExpired     Code = "token_expired"         // the bearer token has expired
	TokenWrongKey    Code = "token_wrong_key"       // the bearer token is signed with another server's key
	TokenNoExpiry    Code = "token_no_expiry"       // the bearer token has no expiry (exp)
	TokenLifetime    Code = "token_lifetime"        // the bearer token claims a lifetime over the maximum
	TokenNotYetValid Code = "token_not_yet_valid"   // the bearer token's nbf or iat is in the future
	TokenSubject     Code = "token_subject"         // the bearer token's subject is not a canonical user id
	Forbidden        Code = "forbidden"             // the credential does not reach this resource
	AdminDisabled    Code = "admin_disabled"        // no admin token is configured
	NotFound         Code = "not_found"             // no such resource or route
	ModelNotFound    Code = "model_not_found"       // the gateway serves no such model
	Unsupported      Code = "unsupported_parameter" // a request parameter the gateway or the model's provider does not take
	MethodNotAllowed Code = "method_not_allowed"    // the route exists, not with this method
	Conflict         Code = "conflict"              // the resource's state forbids the change
	NoRollbackTarget Code = "no_rollback_target"    // the kind has no previous version
	BodyTooLarge     Code = "body_too_large"        // the body is over the route's limit
	Rejected         Code = "rejected"              // a policy version failed the activation pipeline
	OverLimit        Code = "over_limit"            // a setting or upload is over its documented ceiling
	Superseded       Code = "superseded"            // a newer activation or rollback of the kind won; nothing changed
	StoreUnavailable Code = "store_unavailable"     // the policy version store cannot serve now
	ShuttingDown     Code = "shutting_down"         // the server is shutting down
	RateLimited      Code = "rate_limited"          // too many requests; retry later
	KeyRateLimited   Code = "rate_limit_exceeded"   // over the API key's requests or tokens per minute; retry later
	KeyQuota         Code = "insufficient_quota"    // the API key's budget for this period is spent
	KeyLimitsDown    Code = "limits_unavailable"    // the API key's shared limits cannot be checked now
	ModelNotAllowed  Code = "model_not_allowed"     // the API key may not call this model
	OverCapacity     Code = "over_capacity"         // the server holds as many connections as it may; retry later
	Unavailable      Code = "unavailable"           // a dependency (the database) cannot serve now
	LLMUnavailable   Code = "llm_unavailable"       // every model tier is down
	LLMError         Code = "llm_error"             // the model provider failed or refused
	LLMTimeout       Code = "llm_timeout"           // the model did not answer in time
	Internal         Code = "internal"              // anything else; details only in the log
)

// Entry is one row of the table.
type Entry struct {
	Code    Code
	Status  int
	Message string
}

// Table lists every code with its status and default message.
var Table = []Entry{
	{BadRequest, http.StatusBadRequest, "the request could not be read"},
	{InvalidBody, http.StatusBadRequest, "the body is not valid JSON of the expected shape"},
	{Invalid, http.StatusBadRequest, "a value of the request is not valid"},
	{InvalidForm, http.StatusBadRequest, "the upload is not a readable multipart form"},
	{Unauthorized, http.StatusUnauthorized, "missing or invalid credentials"},
	{TokenExpired, http.StatusUnauthorized, "token expired"},
	{TokenNoExpiry, http.StatusUnauthorized, "the token has no expiry (exp)"},
	{TokenLifetime, http.StatusUnauthorized, "the token's lifetime is over the server's maximum"},
	{TokenNotYetValid, http.StatusUnauthorized, "the token is not valid yet (nbf or iat in the future)"},
	{TokenSubject, http.StatusUnauthorized, "the token's subject is not a user id in canonical decimal"},
	{TokenWrongKey, http.StatusUnauthorized, "token not signed with this server's key: mint one for this server (wingate token --addr ADDR)"},
	{Forbidden, http.StatusForbidden, "not allowed"},
	{AdminDisabled, http.StatusForbidden, "the admin API is disabled: set WINGATE_ADMIN_TOKEN"},
	{NotFound, http.StatusNotFound, "not found"},
	{ModelNotFound, http.StatusNotFound, "the model does not exist or is not served here: GET /v1/models lists the models"},
	{Unsupported, http.StatusBadRequest, "a request parameter is not supported"},
	{MethodNotAllowed, http.StatusMethodNotAllowed, "method not allowed on this route"},
	{Conflict, http.StatusConflict, "the resource's current state does not allow this"},
	{NoRollbackTarget, http.StatusConflict, "no previous version to roll back to"},
	{BodyTooLarge, http.StatusRequestEntityTooLarge, "the body is over this route's limit"},
	{Rejected, http.StatusUnprocessableEntity, "the version did not pass the activation pipeline"},
	{OverLimit, http.StatusBadRequest, "a value is over its documented ceiling"},
	{Superseded, http.StatusConflict, "a newer activation or rollback of the same kind started while this one was being checked; nothing changed"},
	{StoreUnavailable, http.StatusServiceUnavailable, "the policy version store is unavailable; the active versions keep serving"},
	{ShuttingDown, http.StatusServiceUnavailable, "the server is shutting down"},
	{RateLimited, http.StatusTooManyRequests, "too many requests, retry later"},
	{KeyRateLimited, http.StatusTooManyRequests, "over this API key's rate limit, retry later"},
	{KeyQuota, http.StatusTooManyRequests, "this API key's budget for the period is spent"},
	{KeyLimitsDown, http.StatusServiceUnavailable, "this API key's limits cannot be checked right now, retry later"},
	{ModelNotAllowed, http.StatusForbidden, "this API key may not call this model"},
	{OverCapacity, http.StatusServiceUnavailable, "the server is at its connection limit, retry later"},
	{Unavailable, http.StatusServiceUnavailable, "the service is unavailable, retry later"},
	{LLMUnavailable, http.StatusServiceUnavailable, "every model tier is unavailable, retry later; your message was saved"},
	{LLMError, http.StatusBadGateway, "the model failed while answering"},
	{LLMTimeout, http.StatusGatewayTimeout, "the model did not answer in time"},
	{Internal, http.StatusInternalServerError, "internal error"},
}

var byCode = func() map[Code]Entry {
	m := make(map[Code]Entry, len(Table))
	for _, e := range Table {
		m[e.Code] = e
	}
	return m
}()

// Lookup returns the entry of c. A field code ("invalid_<field>") is a
// 400 with Invalid's message; an unknown code is Internal's entry.
func Lookup(c Code) (Entry, bool) {
	if e, ok := byCode[c]; ok {
		return e, true
	}
	if strings.HasPrefix(string(c), "invalid_") {
		e := byCode[Invalid]
		e.Code = c
		return e, true
	}
	return byCode[Internal], false
}

// Error is an error answer: a code of the table, its status and a safe
// message. Handlers return it; the server renders it. The field order
// (Status, Code, Message) is part of the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New returns the table's answer for c.
func New(c Code) *Error {
	e, _ := Lookup(c)
	return &Error{Status: e.Status, Code: string(e.Code), Message: e.Message}
}

// Newf returns c's answer with a message of the handler's own about the
// request (never an error's text).
func Newf(c Code, msg string) *Error {
	e := New(c)
	e.Message = msg
	return e
}

// Field returns the answer for a bad field: code "invalid_<field>",
// status 400, message "<field>: <reason>". reason is the project's own
// text (a store.FieldError's or chat.InputError's Reason).
func Field(field, reason string) *Error {
	return Newf(Code("invalid_"+field), field+": "+reason)
}

// ForStatus returns the table's answer for an HTTP status that a library
// (the web framework) raised, with the table's message, not the library's.
func ForStatus(status int) *Error {
	for _, c := range statusCodes {
		if byCode[c].Status == status {
			return New(c)
		}
	}
	if status >= 400 && status < 500 {
		e := New(BadRequest)
		e.Status = status
		return e
	}
	return New(Internal)
}

// statusCodes are the codes ForStatus answers for their status.
var statusCodes = []Code{NotFound, MethodNotAllowed, BodyTooLarge, RateLimited, Unauthorized, Forbidden, Unavailable}

// JSON is the body of an error on /api and /admin:
// {"error": {"code": ..., "message": ...}}.
type JSON struct {
	Error JSONError `json:"error"`
}

// JSONError is the inside of JSON.
type JSONError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// JSONBody renders e in the project's shape.
func (e *Error) JSONBody() JSON { return JSON{JSONError{e.Code, e.Message}} }

// OpenAIType returns e's type and code in OpenAI's error shape
// ({"error": {"message", "type", "param", "code"}}): the type follows the
// status as OpenAI's API does, and unauthorized is spelled invalid_api_key.
func (e *Error) OpenAIType() (typ, code string) {
	typ, code = "invalid_request_error", e.Code
	switch {
	case e.Status == http.StatusUnauthorized:
		typ = "authentication_error"
		if code == string(Unauthorized) {
			code = "invalid_api_key"
		}
	case e.Status == http.StatusForbidden:
		typ = "permission_error"
	case e.Status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
		if code == string(KeyQuota) {
			typ = code // as OpenAI's API spells a spent quota
		}
	case e.Status >= 500:
		typ = "server_error"
	}
	return typ, code
}
