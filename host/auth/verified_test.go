package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestVerifiedCache: a remembered token is answered without allocating,
// is never answered at or past its expiry, and remembering never
// makes a token valid that the parser rejects: a forged signature, a
// token of another authority, a truncated one.
func TestVerifiedCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a, _ := New([]byte("verified-cache-secret-0123"), WithClock(func() time.Time { return now }))
	tok, err := a.Issue(42, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Verify(tok); err != nil || id != 42 {
		t.Fatalf("Verify = %d, %v", id, err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if id, err := a.Verify(tok); err != nil || id != 42 {
			t.Fatalf("Verify again = %d, %v", id, err)
		}
	}); n != 0 {
		t.Errorf("a remembered token: %v allocs/op, want 0", n)
	}
	// A copy in another buffer (as a reused request header gives) hits.
	if id, err := a.Verify(string([]byte(tok))); err != nil || id != 42 {
		t.Fatalf("Verify of a copy = %d, %v", id, err)
	}

	forged := tok[:len(tok)-2] + flip(tok[len(tok)-2:])
	other, _ := New([]byte("another-secret-0123456789"), WithClock(func() time.Time { return now }))
	otherTok, _ := other.Issue(42, time.Minute)
	for name, bad := range map[string]string{"forged signature": forged, "other authority": otherTok,
		"truncated": tok[:len(tok)-1], "with a suffix": tok + "x", "header only": tok[:strings.IndexByte(tok, '.')]} {
		if _, err := a.Verify(bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err = %v, want ErrInvalidToken", name, err)
		}
	}

	now = now.Add(time.Minute - time.Second)
	if _, ok := a.verified.lookup(tok, now); !ok {
		t.Fatal("a second before its expiry, the token is no longer remembered")
	}
	if id, err := a.Verify(tok); err != nil || id != 42 {
		t.Fatalf("a second before expiry: %d, %v", id, err)
	}
	now = now.Add(time.Second) // exactly exp
	if _, ok := a.verified.lookup(tok, now); ok {
		t.Fatal("a remembered token answered at its expiry")
	}
	if _, err := a.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("at its expiry, a remembered token: err = %v, want ErrExpired", err)
	}
	now = now.Add(time.Hour)
	if _, err := a.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("an hour past its expiry: err = %v, want ErrExpired", err)
	}
}

func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

// TestVerifiedCacheBounded: a flood of distinct valid tokens cannot grow
// the memory past the bound, and over-long tokens are not remembered.
func TestVerifiedCacheBounded(t *testing.T) {
	a, _ := New([]byte("verified-cache-secret-0123"))
	for u := int64(1); u <= 3*verifiedShards*verifiedPerShard/2; u++ {
		tok, _ := a.Issue(u, time.Hour)
		if id, err := a.Verify(tok); err != nil || id != u {
			t.Fatalf("user %d: %d %v", u, id, err)
		}
	}
	total := 0
	for i := range a.verified.shards {
		n := len(a.verified.shards[i].m)
		if n > verifiedPerShard {
			t.Fatalf("shard %d holds %d tokens, bound %d", i, n, verifiedPerShard)
		}
		total += n
	}
	if total == 0 {
		t.Fatal("nothing remembered")
	}
	long := strings.Repeat("x", maxCachedToken+1)
	a.verified.remember(long, 1, time.Now().Add(time.Hour))
	if _, ok := a.verified.lookup(long, time.Now()); ok {
		t.Fatal("an over-long token was remembered")
	}
}
