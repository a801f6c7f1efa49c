package auth

import (
	"errors"
	"strconv"
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
		{"no expiry", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: Issuer}), ErrNoExpiry},
		{"wrong issuer", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: "x", ExpiresAt: exp}), ErrInvalidToken},
		{"subject not a number", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "seven", Issuer: Issuer, ExpiresAt: exp}), ErrSubject},
		{"subject negative", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "-7", Issuer: Issuer, ExpiresAt: exp}), ErrSubject},
		{"expired", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: Issuer,
			ExpiresAt: jwt.NewNumericDate(now.Add(-time.Minute))}), ErrExpired},
		{"not yet valid", sign(jwt.SigningMethodHS256, secret, jwt.RegisteredClaims{Subject: "7", Issuer: Issuer, ExpiresAt: exp,
			NotBefore: jwt.NewNumericDate(now.Add(2 * time.Minute))}), ErrNotYetValid},
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

// FuzzVerifyClaims signs claims of any shape with the right key: Verify
// accepts exactly the tokens whose subject is the canonical spelling
// (strconv.FormatInt) of a positive id and whose times keep the rules,
// and remembering a token changes nothing.
func FuzzVerifyClaims(f *testing.F) {
	f.Add("2", true, int64(3600), true, int64(0), false, int64(0))
	f.Add("+2", true, int64(3600), false, int64(0), false, int64(0))
	f.Add("002", true, int64(60), true, int64(-10), true, int64(-5))
	f.Add("9223372036854775807", true, int64(86400), true, int64(0), false, int64(0))
	f.Add("2", false, int64(0), true, int64(61), true, int64(61))
	f.Fuzz(func(t *testing.T, sub string, hasExp bool, exp int64, hasIat bool, iat int64, hasNbf bool, nbf int64) {
		now := time.Unix(1_800_000_000, 0)
		a, _ := New(secret, WithClock(func() time.Time { return now }), WithMaxLifetime(time.Hour))
		clamp := func(v int64) int64 { return max(-1e9, min(v, 1e9)) } // seconds from now
		exp, iat, nbf = clamp(exp), clamp(iat), clamp(nbf)
		c := jwt.RegisteredClaims{Issuer: Issuer, Subject: sub}
		at := func(v int64) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(time.Duration(v) * time.Second)) }
		if hasExp {
			c.ExpiresAt = at(exp)
		}
		if hasIat {
			c.IssuedAt = at(iat)
		}
		if hasNbf {
			c.NotBefore = at(nbf)
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Skip("claims not encodable")
		}
		n, perr := strconv.ParseInt(sub, 10, 64)
		from := int64(0)
		if hasIat {
			from = iat
		}
		skew := int64(Skew / time.Second)
		want := perr == nil && n > 0 && strconv.FormatInt(n, 10) == sub &&
			hasExp && exp > 0 && exp-from <= 3600 &&
			(!hasIat || iat <= skew) && (!hasNbf || nbf <= skew)
		for range 2 { // parsed, then remembered
			id, err := a.Verify(tok)
			if want && (err != nil || id != n) {
				t.Fatalf("claims %+v: Verify = %d, %v; want %d", c, id, err, n)
			}
			if !want && (err == nil || id != 0) {
				t.Fatalf("claims %+v: Verify = %d, %v; want a refusal", c, id, err)
			}
		}
	})
}

// TestStrictClaims: the rules of checkClaims, each at its edge. A token
// signed with the right key but breaking one rule is refused with that
// rule's error; the same token with the rule met is accepted.
func TestStrictClaims(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a, err := New(secret, WithClock(func() time.Time { return now }), WithMaxLifetime(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	sign := func(c jwt.RegisteredClaims) string {
		c.Issuer = Issuer
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		c    jwt.RegisteredClaims
		want error // nil: accepted as user 2
	}{
		{"canonical", jwt.RegisteredClaims{Subject: "2", ExpiresAt: at(time.Hour)}, nil},
		{"plus sign", jwt.RegisteredClaims{Subject: "+2", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"leading zeros", jwt.RegisteredClaims{Subject: "002", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"leading space", jwt.RegisteredClaims{Subject: " 2", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"trailing space", jwt.RegisteredClaims{Subject: "2 ", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"decimal point", jwt.RegisteredClaims{Subject: "2.0", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"exponent", jwt.RegisteredClaims{Subject: "2e0", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"hex", jwt.RegisteredClaims{Subject: "0x2", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"empty", jwt.RegisteredClaims{ExpiresAt: at(time.Hour)}, ErrSubject},
		{"zero", jwt.RegisteredClaims{Subject: "0", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"overflow", jwt.RegisteredClaims{Subject: "9223372036854775808", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"twenty digits", jwt.RegisteredClaims{Subject: "10000000000000000002", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"unicode digit", jwt.RegisteredClaims{Subject: "２", ExpiresAt: at(time.Hour)}, ErrSubject},
		{"no exp", jwt.RegisteredClaims{Subject: "2", IssuedAt: at(0)}, ErrNoExpiry},
		{"exp now", jwt.RegisteredClaims{Subject: "2", ExpiresAt: at(0)}, ErrExpired},
		{"exp a second ago", jwt.RegisteredClaims{Subject: "2", ExpiresAt: at(-time.Second)}, ErrExpired},
		{"lifetime at the maximum", jwt.RegisteredClaims{Subject: "2", IssuedAt: at(-time.Hour), ExpiresAt: at(time.Hour)}, nil},
		{"lifetime over the maximum", jwt.RegisteredClaims{Subject: "2", IssuedAt: at(-time.Hour), ExpiresAt: at(time.Hour + time.Second)}, ErrLifetime},
		{"no iat, exp within the maximum", jwt.RegisteredClaims{Subject: "2", ExpiresAt: at(2 * time.Hour)}, nil},
		{"no iat, exp past the maximum", jwt.RegisteredClaims{Subject: "2", ExpiresAt: at(2*time.Hour + time.Second)}, ErrLifetime},
		{"a century", jwt.RegisteredClaims{Subject: "2", IssuedAt: at(0), ExpiresAt: at(100 * 365 * 24 * time.Hour)}, ErrLifetime},
		{"iat in the past", jwt.RegisteredClaims{Subject: "2", IssuedAt: at(-30 * time.Minute), ExpiresAt: at(time.Hour)}, nil},
		{"iat within the skew", jwt.RegisteredClaims{Subject: "2", IssuedAt: at(Skew), ExpiresAt: at(time.Hour)}, nil},
		{"iat past the skew", jwt.RegisteredClaims{Subject: "2", IssuedAt: at(Skew + time.Second), ExpiresAt: at(time.Hour)}, ErrNotYetValid},
		{"nbf within the skew", jwt.RegisteredClaims{Subject: "2", NotBefore: at(Skew), ExpiresAt: at(time.Hour)}, nil},
		{"nbf past the skew", jwt.RegisteredClaims{Subject: "2", NotBefore: at(Skew + time.Second), ExpiresAt: at(time.Hour)}, ErrNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Verify(sign(tc.c))
			if tc.want == nil {
				if err != nil || id != 2 {
					t.Fatalf("Verify = %d, %v; want user 2", id, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || id != 0 {
				t.Fatalf("Verify = %d, %v; want %v", id, err, tc.want)
			}
		})
	}
	// Issue stays within the maximum and refuses to go past it.
	if _, err := a.Issue(2, 2*time.Hour+time.Second); err == nil {
		t.Error("Issue past the maximum lifetime succeeded")
	}
	tok, err := a.Issue(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Verify(tok); err != nil || id != 2 {
		t.Fatalf("a token issued with the default lifetime: %d, %v", id, err)
	}
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
