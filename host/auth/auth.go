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

// Skew is the clock skew tolerated on a token's "iat" (issued at) and
// "nbf" (not before): a token issued by a peer whose clock runs ahead by
// up to Skew is accepted. The expiry ("exp") has no leeway.
const Skew = 60 * time.Second

// DefaultTTL is the lifetime of tokens issued without an explicit one.
const DefaultTTL = 24 * time.Hour

// DefaultMaxLifetime is the longest lifetime a token may claim (exp −
// iat, or exp − now without iat) unless WithMaxLifetime sets another.
const DefaultMaxLifetime = 24 * time.Hour

// maxSubjectDigits bounds a subject: a positive int64 has at most 19.
const maxSubjectDigits = 19

// Errors returned by Verify; each means "401". Every one but ErrExpired
// is also an ErrInvalidToken.
var (
	// ErrInvalidToken covers malformed, forged (bad signature), wrongly
	// signed (another algorithm) and wrongly issued tokens.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrExpired means the token's expiry has passed.
	ErrExpired = errors.New("auth: token expired")
	// ErrNoExpiry: the token has no "exp".
	ErrNoExpiry = fmt.Errorf("%w: no expiry", ErrInvalidToken)
	// ErrLifetime: the token claims a lifetime over the maximum.
	ErrLifetime = fmt.Errorf("%w: lifetime over the maximum", ErrInvalidToken)
	// ErrNotYetValid: "nbf" is in the future, or "iat" further in the
	// future than Skew.
	ErrNotYetValid = fmt.Errorf("%w: not valid yet", ErrInvalidToken)
	// ErrSubject: "sub" is not a user id in canonical decimal (1 to
	// 2^63-1, no sign, no leading zero, no space).
	ErrSubject = fmt.Errorf("%w: subject is not a canonical user id", ErrInvalidToken)
	// ErrWrongKey means a well-formed HS256 token whose signature does
	// not match this authority's secret: signed for another server. It
	// wraps ErrInvalidToken.
	ErrWrongKey = fmt.Errorf("%w: signed with another key", ErrInvalidToken)
)

// Authority signs and verifies tokens with one secret. It is safe for
// concurrent use.
type Authority struct {
	secret      []byte
	now         func() time.Time
	maxLifetime time.Duration
	parser      *jwt.Parser
	// verified remembers tokens that passed Verify (verified.go).
	verified verifiedCache
}

// Option configures an Authority.
type Option func(*Authority)

// WithClock makes the Authority read the time from now (tests).
func WithClock(now func() time.Time) Option { return func(a *Authority) { a.now = now } }

// WithMaxLifetime sets the longest lifetime a token may claim (d > 0;
// DefaultMaxLifetime otherwise).
func WithMaxLifetime(d time.Duration) Option {
	return func(a *Authority) {
		if d > 0 {
			a.maxLifetime = d
		}
	}
}

// MaxLifetime returns the longest lifetime a token may claim.
func (a *Authority) MaxLifetime() time.Duration { return a.maxLifetime }

// New returns an Authority for secret (at least MinSecretLen bytes).
func New(secret []byte, opts ...Option) (*Authority, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("auth: secret must be at least %d bytes", MinSecretLen)
	}
	a := &Authority{secret: append([]byte(nil), secret...), now: time.Now, maxLifetime: DefaultMaxLifetime}
	a.verified.seed = maphash.MakeSeed()
	for _, o := range opts {
		o(a)
	}
	// The parser checks the algorithm and the signature; Verify checks
	// the claims itself (checkClaims), each rule with its own error.
	a.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithoutClaimsValidation(),
	)
	return a, nil
}

// RandomSecret returns a fresh 32-byte secret.
func RandomSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// Issue returns a token for userID valid for ttl (DefaultTTL, or the
// maximum lifetime when shorter, when ttl <= 0; at most the maximum).
func (a *Authority) Issue(userID int64, ttl time.Duration) (string, error) {
	if userID <= 0 {
		return "", fmt.Errorf("auth: user id must be positive, got %d", userID)
	}
	if ttl <= 0 {
		ttl = min(DefaultTTL, a.maxLifetime)
	}
	if ttl > a.maxLifetime {
		return "", fmt.Errorf("auth: lifetime %v is over the maximum %v", ttl, a.maxLifetime)
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

// Verify checks token's signature, algorithm and claims (checkClaims)
// and returns its user id. Errors wrap ErrExpired or ErrInvalidToken (and
// the more precise errors above). A token that verified before and has
// not expired is answered from memory without allocating (verified.go).
func (a *Authority) Verify(token string) (int64, error) {
	now := a.now()
	if id, ok := a.verified.lookup(token, now); ok {
		return id, nil
	}
	var claims jwt.RegisteredClaims
	tok, err := a.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) && tok != nil && tok.Method == jwt.SigningMethodHS256 {
			return 0, fmt.Errorf("%w: %w", ErrWrongKey, err)
		}
		return 0, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	id, err := a.checkClaims(&claims, now)
	if err != nil {
		return 0, err
	}
	a.verified.remember(token, id, claims.ExpiresAt.Time)
	return id, nil
}

// checkClaims applies the rules of a token whose signature verified: the
// issuer is Issuer; "exp" is present and after now (no leeway); "nbf",
// when present, is at most Skew after now; "iat", when present, at most
// Skew after now; the lifetime (exp − iat, or exp − now without iat) at
// most the maximum; "sub" a user id in canonical decimal.
func (a *Authority) checkClaims(c *jwt.RegisteredClaims, now time.Time) (int64, error) {
	if c.Issuer != Issuer {
		return 0, fmt.Errorf("%w: issuer %q", ErrInvalidToken, c.Issuer)
	}
	if c.ExpiresAt == nil {
		return 0, ErrNoExpiry
	}
	exp := c.ExpiresAt.Time
	if !now.Before(exp) {
		return 0, ErrExpired
	}
	if c.NotBefore != nil && c.NotBefore.After(now.Add(Skew)) {
		return 0, ErrNotYetValid
	}
	from := now
	if c.IssuedAt != nil {
		if c.IssuedAt.After(now.Add(Skew)) {
			return 0, ErrNotYetValid
		}
		from = c.IssuedAt.Time
	}
	if exp.Sub(from) > a.maxLifetime {
		return 0, ErrLifetime
	}
	id, ok := ParseSubject(c.Subject)
	if !ok {
		return 0, ErrSubject
	}
	return id, nil
}

// ParseSubject parses a token's subject: a user id from 1 to 2^63-1 in
// canonical decimal, the only spelling Issue writes ("+2", "002", " 2",
// "2.0" and "" are not).
func ParseSubject(s string) (int64, bool) {
	if s == "" || len(s) > maxSubjectDigits || s[0] == '0' {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
