// Package auth issues and verifies the HS256 JSON Web Tokens that API
// clients present as bearer tokens. A token's subject ("sub") is the user
// id in decimal; every token carries an expiry.
package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is the "iss" claim of every token.
const Issuer = "wingate"

// MinSecretLen is the shortest accepted HS256 key, in bytes.
const MinSecretLen = 16

// leeway is the clock skew tolerated on a token's expiry.
const leeway = 5 * time.Second

// DefaultTTL is the lifetime of tokens issued without an explicit one.
const DefaultTTL = 24 * time.Hour

// Errors returned by Verify; both mean "401".
var (
	// ErrInvalidToken covers malformed, forged (bad signature), wrongly
	// signed (another algorithm) and subject-less tokens.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrExpired means the token's expiry has passed.
	ErrExpired = errors.New("auth: token expired")
	// ErrWrongKey means a well-formed HS256 token whose signature does
	// not match this authority's secret: signed for another server. It
	// wraps ErrInvalidToken.
	ErrWrongKey = fmt.Errorf("%w: signed with another key", ErrInvalidToken)
)

// Authority signs and verifies tokens with one secret. It is safe for
// concurrent use.
type Authority struct {
	secret []byte
	now    func() time.Time
	parser *jwt.Parser
	// verified remembers tokens that passed Verify (verified.go).
	verified verifiedCache
}

// Option configures an Authority.
type Option func(*Authority)

// WithClock makes the Authority read the time from now (tests).
func WithClock(now func() time.Time) Option { return func(a *Authority) { a.now = now } }

// New returns an Authority for secret (at least MinSecretLen bytes).
func New(secret []byte, opts ...Option) (*Authority, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("auth: secret must be at least %d bytes", MinSecretLen)
	}
	a := &Authority{secret: append([]byte(nil), secret...), now: time.Now}
	a.verified.seed = maphash.MakeSeed()
	for _, o := range opts {
		o(a)
	}
	a.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(Issuer),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return a.now() }),
	)
	return a, nil
}

// RandomSecret returns a fresh 32-byte secret.
func RandomSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// Issue returns a token for userID valid for ttl (DefaultTTL when ttl <= 0).
func (a *Authority) Issue(userID int64, ttl time.Duration) (string, error) {
	if userID <= 0 {
		return "", fmt.Errorf("auth: user id must be positive, got %d", userID)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := a.now()
	claims := jwt.RegisteredClaims{
		Issuer:    Issuer,
		Subject:   strconv.FormatInt(userID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return tok, nil
}

// Verify checks token's signature, algorithm, issuer and expiry and returns
// its user id. Errors wrap ErrExpired or ErrInvalidToken. A token that
// verified before and has not expired is answered from memory without
// allocating (verified.go).
func (a *Authority) Verify(token string) (int64, error) {
	if id, ok := a.verified.lookup(token, a.now()); ok {
		return id, nil
	}
	var claims jwt.RegisteredClaims
	tok, err := a.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return 0, fmt.Errorf("%w: %w", ErrExpired, err)
		}
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) && tok != nil && tok.Method == jwt.SigningMethodHS256 {
			return 0, fmt.Errorf("%w: %w", ErrWrongKey, err)
		}
		return 0, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: subject %q is not a user id", ErrInvalidToken, claims.Subject)
	}
	if claims.ExpiresAt != nil { // required by the parser
		a.verified.remember(token, id, claims.ExpiresAt.Add(leeway))
	}
	return id, nil
}
