package server

import (
	"errors"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/wingman-app/wingate/host/apierr"
	"github.com/wingman-app/wingate/host/auth"
)

// TokenVerifier turns a bearer token into a user id; *auth.Authority
// implements it. Expired tokens are reported with auth.ErrExpired.
type TokenVerifier interface {
	Verify(token string) (int64, error)
}

// Locals keys set by requireAuth.
// localUser is the Locals key of the authenticated user's int64 id.
const localUser = "user"

// requireAuth is the middleware in front of every per-user endpoint: it
// verifies the "Authorization: Bearer <jwt>" header and stores the user id
// in c.Locals("user") (int64) and c.Locals("user_id") (decimal string).
// Missing, malformed, forged and expired tokens get 401 JSON. Without a
// configured verifier every request is refused.
func (s *Server) requireAuth(c *fiber.Ctx) error {
	if s.deps.Auth == nil {
		return unauthorized("authentication is not configured")
	}
	h := c.Get(fiber.HeaderAuthorization)
	if h == "" {
		return unauthorized("missing bearer token")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return unauthorized("authorization header must be \"Bearer <token>\"")
	}
	id, err := s.deps.Auth.Verify(strings.TrimSpace(tok))
	if err != nil {
		return tokenError(err)
	}
	c.Locals(localUser, id)
	return c.Next()
}

// tokenErrors maps auth's refusals onto the table, most precise first.
var tokenErrors = []struct {
	err  error
	code apierr.Code
}{
	{auth.ErrExpired, apierr.TokenExpired},
	{auth.ErrNoExpiry, apierr.TokenNoExpiry},
	{auth.ErrLifetime, apierr.TokenLifetime},
	{auth.ErrNotYetValid, apierr.TokenNotYetValid},
	{auth.ErrSubject, apierr.TokenSubject},
	{auth.ErrWrongKey, apierr.TokenWrongKey},
}

// tokenError is the 401 for a refused token: the table's entry of its
// rule, never the parser's text.
func tokenError(err error) *APIError {
	for _, te := range tokenErrors {
		if errors.Is(err, te.err) {
			return apierr.New(te.code)
		}
	}
	return unauthorized("invalid token")
}

// userID returns the authenticated user's id set by requireAuth, and false
// on routes without authentication.
func userID(c *fiber.Ctx) (int64, bool) {
	id, ok := c.Locals(localUser).(int64)
	return id, ok && id > 0
}

// ownerOnly checks that the ":id" path parameter names the authenticated
// user: 400 when it is not a positive integer, 403 when it is someone
// else.
func ownerOnly(c *fiber.Ctx) (int64, error) {
	me, ok := userID(c)
	if !ok {
		return 0, unauthorized("missing bearer token")
	}
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("invalid_id", "id: must be a positive integer")
	}
	if id != me {
		return 0, forbidden("not your resource")
	}
	return id, nil
}
