package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/wingman-app/wingate/host/keys"
)

// Default limits of Config (docs/operations.md).
const (
	// DefaultBodyLimit caps a request body on every route but the two
	// below: the JSON API's bodies are a few hundred bytes.
	DefaultBodyLimit = 64 << 10
	// DefaultChatBodyLimit caps the body of a chat message or a chat
	// completion sent with a valid bearer token (a conversation's context).
	DefaultChatBodyLimit = 1 << 20
	// DefaultIdleTimeout closes a keep-alive connection that sends no
	// new request.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultStreamTimeout is the longest a server-sent event stream
	// (/dashboard/events, a streamed chat answer) lasts; the dashboard's
	// browser reconnects by itself.
	DefaultStreamTimeout = 10 * time.Minute
	// multipartSlack is the room a multipart form's boundaries and
	// fields take around an uploaded module.
	multipartSlack = 1 << 20
)

// requestConfig is the server's HeaderReceived hook: it runs once the
// request's header is read and before a byte of its body is, and sets
// the request's body limit and write timeout from its route.
//
// The body limit is checked against Content-Length before the body is
// read (fasthttp answers 413 and closes the connection without reading
// it) and while a chunked body is read (it stops at the limit). Larger
// limits need the credential the route needs, checked here: the admin
// upload limit only with the admin token, the chat limit only with a
// valid API token. Everything else gets Config.BodyLimit.
//
// Server-sent event routes write for up to Config.StreamTimeout instead
// of Config.WriteTimeout.
func (s *Server) requestConfig(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if !h.IsPost() {
		if h.IsGet() && pathIs(h, pathDashboardEvents) {
			return fasthttp.RequestConfig{WriteTimeout: s.cfg.StreamTimeout}
		}
		return fasthttp.RequestConfig{}
	}
	switch {
	case pathIs(h, "/admin/policies"):
		if s.deps.Rollout != nil && s.adminBearer(h.Peek(fiber.HeaderAuthorization)) {
			return fasthttp.RequestConfig{MaxRequestBodySize: s.uploadLimit() + multipartSlack}
		}
	case pathIs(h, routeChatCompletions), pathMatches(h, routeChatMessages), pathIs(h, routeMessages):
		cfg := fasthttp.RequestConfig{WriteTimeout: s.cfg.StreamTimeout}
		if s.apiBearer(h.Peek(fiber.HeaderAuthorization)) || s.apiKey(h.Peek("X-Api-Key")) {
			cfg.MaxRequestBodySize = s.cfg.ChatBodyLimit
		}
		return cfg
	}
	return fasthttp.RequestConfig{}
}

// routeChatCompletions is the OpenAI-compatible gateway's route.
const routeChatCompletions = "/v1/chat/completions"

// requestPath is the path of h's request target, without its query.
func requestPath(h *fasthttp.RequestHeader) []byte {
	p := h.RequestURI()
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1] // the router ignores one trailing slash
	}
	return p
}

// pathIs reports whether h's path is path, as the router (not case
// sensitive) matches it. Any other spelling gets the default limit.
func pathIs(h *fasthttp.RequestHeader, path string) bool {
	return bytes.EqualFold(requestPath(h), []byte(path))
}

// pathMatches reports whether h's path matches template, whose ":name"
// segments match one non-empty segment.
func pathMatches(h *fasthttp.RequestHeader, template string) bool {
	p, t := requestPath(h), []byte(template)
	for len(t) > 0 {
		if len(p) == 0 || p[0] != '/' || t[0] != '/' {
			return false
		}
		p, t = p[1:], t[1:]
		pi, ti := segEnd(p), segEnd(t)
		if len(t) > 0 && t[0] == ':' {
			if pi == 0 {
				return false
			}
		} else if !bytes.EqualFold(p[:pi], t[:ti]) {
			return false
		}
		p, t = p[pi:], t[ti:]
	}
	return len(p) == 0
}

func segEnd(b []byte) int {
	if i := bytes.IndexByte(b, '/'); i >= 0 {
		return i
	}
	return len(b)
}

// bearer returns the token of an "Authorization: Bearer <token>" value.
func bearer(v []byte) ([]byte, bool) {
	const prefix = "bearer "
	if len(v) <= len(prefix) || !bytes.EqualFold(v[:len(prefix)], []byte(prefix)) {
		return nil, false
	}
	tok := bytes.TrimSpace(v[len(prefix):])
	return tok, len(tok) > 0
}

// adminBearer reports whether v carries the admin token (compared as
// requireAdmin does, by digest in constant time).
func (s *Server) adminBearer(v []byte) bool {
	tok, ok := bearer(v)
	if !ok || s.deps.AdminToken == "" {
		return false
	}
	a, b := sha256.Sum256(tok), sha256.Sum256([]byte(s.deps.AdminToken))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// apiBearer reports whether v carries a valid API token.
func (s *Server) apiBearer(v []byte) bool {
	tok, ok := bearer(v)
	if !ok {
		return false
	}
	if keys.LooksLikeSecret(string(tok)) {
		return s.validKey(tok)
	}
	if s.deps.Auth == nil {
		return false
	}
	_, err := s.deps.Auth.Verify(string(tok))
	return err == nil
}

// apiKey reports whether v (an x-api-key header, as Anthropic's SDKs
// send the key) is a valid API token.
func (s *Server) apiKey(v []byte) bool {
	if keys.LooksLikeSecret(string(v)) {
		return s.validKey(v)
	}
	if len(v) == 0 || s.deps.Auth == nil {
		return false
	}
	_, err := s.deps.Auth.Verify(string(v))
	return err == nil
}

// refusedBody answers a request refused for its body's size. On /admin a
// request without the admin token is answered as requireAdmin answers
// it, whatever its body's size: the size of the body an upload may have
// says nothing about the token.
func (s *Server) refusedBody(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if !errors.As(err, &fe) || fe.Code != fiber.StatusRequestEntityTooLarge || s.deps.Rollout == nil {
		return err
	}
	p := requestPath(&c.Request().Header)
	admin := bytes.EqualFold(p, []byte("/admin")) ||
		len(p) > len("/admin/") && bytes.EqualFold(p[:len("/admin/")], []byte("/admin/"))
	if !admin || s.adminBearer(c.Request().Header.Peek(fiber.HeaderAuthorization)) {
		return err
	}
	if aerr := s.requireAdmin(c); aerr != nil {
		return aerr
	}
	return err
}

// applyConnLimits sets the fasthttp server's connection limits and the
// HeaderReceived hook. Fiber's own settings (BodyLimit, the timeouts,
// Concurrency) are set in New.
func (s *Server) applyConnLimits() {
	srv := s.app.Server()
	srv.HeaderReceived = s.requestConfig
	srv.MaxConnsPerIP = s.cfg.MaxConnsPerIP
	// The refusal of a connection over a limit is a short plain-text
	// answer written without reading the request, then a close.
	srv.SleepWhenConcurrencyLimitsExceeded = 0
	srv.Logger = fasthttpLogger{s}
}

// fasthttpLogger sends fasthttp's own log lines (refused connections,
// accept errors) to the server's log at warn level.
type fasthttpLogger struct{ s *Server }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.s.log.Warn("http server", "msg", fmt.Sprintf(format, args...))
}
