package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestIssueVerify(t *testing.T) {
	a, err := New(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Issue(42, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Verify(tok)
	if err != nil || id != 42 {
		t.Fatalf("Verify = %d, %v; want 42", id, err)
	}
	// The claims are what the contract says: sub = decimal id, iss, exp.
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	if c.Subject != "42" || c.Issuer != Issuer || c.ExpiresAt == nil {
		t.Fatalf("claims = %+v", c)
	}
	if _, err := a.Issue(0, time.Hour); err == nil {
		t.Error("Issue(0) succeeded")
	}
	if _, err := New([]byte("short")); err == nil {
		t.Error("New accepted a 5-byte secret")
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a, _ := New(secret, WithClock(func() time.Time { return now }))
	sign := func(m jwt.SigningMethod, key any, c jwt.RegisteredClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := jwt.NewNumericDate(now.Add(time.Hour))
	good := jwt.RegisteredClaims{Subject: "7", Issuer: Issuer, ExpiresAt: exp}
	valid := sign(jwt.SigningMethodHS256, secret, good)
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrInvalidToken},
		{"garbage", "a.b.c", ErrInvalidToken},
		{"other key", sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef!"), good), ErrInvalidToken},
		{"tampered payload", strings.Replace(valid, valid[40:44], "AAAA", 1), ErrInvalidToken},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), ErrInvalidToken},
		{"HS384", sign(jwt.SigningMethodHS384, secret, good), ErrInvalidToken},
		{"no expiry", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: Issuer}), ErrInvalidToken},
		{"wrong issuer", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: "x", ExpiresAt: exp}), ErrInvalidToken},
		{"subject not a number", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "seven", Issuer: Issuer, ExpiresAt: exp}), ErrInvalidToken},
		{"subject negative", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "-7", Issuer: Issuer, ExpiresAt: exp}), ErrInvalidToken},
		{"expired", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: Issuer,
			ExpiresAt: jwt.NewNumericDate(now.Add(-time.Minute))}), ErrExpired},
		{"not yet valid", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: Issuer, ExpiresAt: exp,
			NotBefore: jwt.NewNumericDate(now.Add(time.Minute))}), ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Verify(tc.token)
			if !errors.Is(err, tc.want) || id != 0 {
				t.Fatalf("Verify = %d, %v; want %v", id, err, tc.want)
			}
		})
	}
	if id, err := a.Verify(valid); err != nil || id != 7 {
		t.Fatalf("valid token: %d, %v", id, err)
	}
}

func FuzzVerify(f *testing.F) {
	a, _ := New(secret)
	tok, _ := a.Issue(1, time.Hour)
	for _, s := range []string{tok, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", tok + "x", strings.Repeat(".", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := a.Verify(s)
		if err == nil && (id <= 0 || s != tok && !strings.HasPrefix(s, tok[:10])) {
			t.Fatalf("Verify(%q) = %d with no error", s, id)
		}
		if err != nil && !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify(%q) error %v is neither ErrInvalidToken nor ErrExpired", s, err)
		}
	})
}

// A token signed with another secret is told apart (ErrWrongKey, which
// is also ErrInvalidToken); other malformed tokens are not, and the
// error names neither secret.
func TestVerifyWrongKey(t *testing.T) {
	const mine, theirs = "my-secret-0123456789abcdef", "their-secret-0123456789abcdef"
	a, _ := New([]byte(mine))
	b, _ := New([]byte(theirs))
	tok, _ := b.Issue(3, time.Hour)
	_, err := a.Verify(tok)
	if !errors.Is(err, ErrWrongKey) || !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token of another key: %v, want ErrWrongKey", err)
	}
	if strings.Contains(err.Error(), mine) || strings.Contains(err.Error(), theirs) {
		t.Fatalf("error shows a secret: %v", err)
	}
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.RegisteredClaims{Subject: "1", Issuer: Issuer,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString([]byte(theirs))
	for name, bad := range map[string]string{"garbage": "a.b.c", "hs512": hs512, "empty": ""} {
		if _, err := a.Verify(bad); err == nil || errors.Is(err, ErrWrongKey) {
			t.Errorf("%s: %v, want invalid but not ErrWrongKey", name, err)
		}
	}
	if id, err := b.Verify(tok); err != nil || id != 3 {
		t.Fatalf("own key: %d %v", id, err)
	}
}
