// Package keystest is the contract every keys.Store passes: keys.MemStore
// in process and pgstore's over PostgreSQL run the same suite.
package keystest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/keys"
)

// Run runs the contract against s, which must be empty.
func Run(t *testing.T, s keys.Store) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	exp := now.Add(48 * time.Hour)
	mk := func(name string, l keys.Limits) (keys.Key, string) {
		t.Helper()
		secret, hash, hint := keys.NewSecret()
		k := keys.Key{ID: keys.NewID(), Name: name, Hint: hint, Limits: l, ExpiresAt: &exp,
			Metadata: []byte(`{"team": "coach"}`), CreatedAt: now}
		if err := s.CreateKey(ctx, k, hash); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return k, secret
	}
	a, secretA := mk("alpha", keys.Limits{Models: []string{"auto", "economy"}, RPM: 60, TPM: 10000,
		Budget: keys.ToMicros(12.5), BudgetPeriod: keys.PeriodDay})
	b, secretB := mk("beta", keys.Limits{BudgetPeriod: keys.PeriodMonth})

	t.Run("lookup", func(t *testing.T) {
		got, err := s.KeyBySecretHash(ctx, keys.Hash(secretA), now)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != a.ID || got.Name != "alpha" || got.RPM != 60 || got.TPM != 10000 || got.Budget != 12_500_000 ||
			got.BudgetPeriod != keys.PeriodDay || len(got.Models) != 2 || got.Models[1] != "economy" ||
			got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || got.Hint != a.Hint || !got.CreatedAt.Equal(now) {
			t.Errorf("got %+v, want %+v", got, a)
		}
		if _, err := s.KeyBySecretHash(ctx, keys.Hash(secretA+"x"), now); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("unknown secret: err %v, want ErrNotFound", err)
		}
		if _, err := s.GetKey(ctx, "vk_missing"); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("unknown id: err %v, want ErrNotFound", err)
		}
		list, err := s.ListKeys(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %d keys, %v", len(list), err)
		}
		if list[0].ID != a.ID && list[1].ID != a.ID {
			t.Errorf("list lacks %s", a.ID)
		}
	})

	t.Run("rotate with grace, then without", func(t *testing.T) {
		secret2, hash2, hint2 := keys.NewSecret()
		k, err := s.RotateKey(ctx, b.ID, hash2, hint2, now, now.Add(time.Hour))
		if err != nil || k.Hint != hint2 || k.RotatedAt == nil {
			t.Fatalf("rotate: %+v %v", k, err)
		}
		for _, sec := range []string{secretB, secret2} {
			if got, err := s.KeyBySecretHash(ctx, keys.Hash(sec), now.Add(59*time.Minute)); err != nil || got.ID != b.ID {
				t.Errorf("within grace: %v %v", got.ID, err)
			}
		}
		if _, err := s.KeyBySecretHash(ctx, keys.Hash(secretB), now.Add(61*time.Minute)); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("old secret after grace: %v, want ErrNotFound", err)
		}
		_, hash3, hint3 := keys.NewSecret()
		if _, err := s.RotateKey(ctx, b.ID, hash3, hint3, now, now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.KeyBySecretHash(ctx, keys.Hash(secret2), now); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("rotated without grace: old secret %v, want ErrNotFound", err)
		}
		if _, err := s.RotateKey(ctx, "vk_missing", hash3, hint3, now, now); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("rotate unknown: %v", err)
		}
	})

	t.Run("limits and revocation", func(t *testing.T) {
		l := keys.Limits{Models: []string{"premium"}, RPM: 5, Budget: 7, BudgetPeriod: keys.PeriodTotal}
		k, err := s.UpdateKeyLimits(ctx, a.ID, l)
		if err != nil || k.RPM != 5 || k.TPM != 0 || k.Budget != 7 || k.BudgetPeriod != keys.PeriodTotal || len(k.Models) != 1 {
			t.Fatalf("limits: %+v %v", k, err)
		}
		r1, err := s.RevokeKey(ctx, a.ID, now)
		if err != nil || r1.RevokedAt == nil || !r1.RevokedAt.Equal(now) {
			t.Fatalf("revoke: %+v %v", r1, err)
		}
		r2, err := s.RevokeKey(ctx, a.ID, now.Add(time.Hour))
		if err != nil || !r2.RevokedAt.Equal(now) {
			t.Errorf("revoking again moved the time: %v %v", r2.RevokedAt, err)
		}
		got, err := s.KeyBySecretHash(ctx, keys.Hash(secretA), now)
		if err != nil || got.Check(now) != keys.ErrRevoked {
			t.Errorf("revoked key: %v, check %v", err, got.Check(now))
		}
	})

	t.Run("ledger sums exactly and counts a retried row once", func(t *testing.T) {
		var rows []keys.Usage
		var want keys.Micros
		for i := range 200 {
			u := keys.Usage{KeyID: b.ID, At: now.Add(time.Duration(i) * time.Minute), RequestID: fmt.Sprintf("req-%s-%d", b.ID, i),
				Endpoint: "chat.completions", Model: "m", Tier: "economy", InputTokens: 10 + i, OutputTokens: 3,
				Cost: keys.Micros(1234 + i), Partial: i%50 == 0}
			rows = append(rows, u)
			if u.At.Before(now.Add(150 * time.Minute)) {
				want += u.Cost
			}
		}
		var wg sync.WaitGroup
		for i := 0; i < 200; i += 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.RecordUsage(ctx, rows[i:i+50]); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if err := s.RecordUsage(ctx, rows[100:110]); err != nil {
			t.Fatal(err)
		}
		sp, err := s.KeySpend(ctx, b.ID, now, now.Add(150*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if sp.Requests != 150 || sp.Cost != want || sp.Partial != 3 || sp.OutputTokens != 450 {
			t.Errorf("spend %+v, want 150 requests, %d micros, 3 partial, 450 output tokens", sp, want)
		}
		other, err := s.KeySpend(ctx, a.ID, now, now.Add(24*time.Hour))
		if err != nil || other.Requests != 0 || other.Cost != 0 {
			t.Errorf("another key's spend: %+v %v", other, err)
		}
	})
}
