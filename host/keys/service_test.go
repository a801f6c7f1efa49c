package keys_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/keys"
)

// countingStore counts the lookups that reach the store.
type countingStore struct {
	*keys.MemStore
	lookups atomic.Int64
}

func (c *countingStore) KeyBySecretHash(ctx context.Context, h []byte, now time.Time) (keys.Key, error) {
	c.lookups.Add(1)
	return c.MemStore.KeyBySecretHash(ctx, h, now)
}

// TestUnknownKeyFlood: 20,000 random secrets in a burst cause at most the
// miss budget's lookups in the store, and a key that opened before keeps
// opening through the flood (its cached entry expiring all along).
func TestUnknownKeyFlood(t *testing.T) {
	st := &countingStore{MemStore: keys.NewMemStore()}
	svc := keys.NewService(keys.Config{Store: st, LookupTTL: time.Millisecond, MissBudget: 100})
	defer svc.Close(context.Background())
	ctx := context.Background()
	good, err := svc.Create(ctx, keys.Spec{Name: "good", Limits: keys.Limits{BudgetPeriod: keys.PeriodMonth}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, good.Secret); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	busy, notFound := 0, 0
	for i := range 20_000 {
		secret, _, _ := keys.NewSecret()
		_, err := svc.Authenticate(ctx, secret)
		switch {
		case errors.Is(err, keys.ErrBusy):
			busy++
		case errors.Is(err, keys.ErrNotFound):
			notFound++
		default:
			t.Fatalf("random secret: %v", err)
		}
		if i%1000 == 0 {
			if _, err := svc.Authenticate(ctx, good.Secret); err != nil {
				t.Fatalf("the good key during the flood: %v", err)
			}
		}
	}
	elapsed := time.Since(start).Seconds()
	bound := int64(200 + 100*elapsed + 30) // burst, rate, the good key's refreshes
	if n := st.lookups.Load(); n > bound {
		t.Errorf("%d store lookups for 20,000 random secrets in %.2fs, bound %d", n, elapsed, bound)
	}
	t.Logf("20,000 random secrets in %.2fs: %d looked up (not found), %d refused busy, %d store lookups", elapsed, notFound, busy, st.lookups.Load())
	// Oversized and foreign tokens never reach the store.
	before := st.lookups.Load()
	for _, tok := range []string{"", "Bearer", "sk-abc", keys.SecretPrefix + strings.Repeat("A", 10_000)} {
		if _, err := svc.Authenticate(ctx, tok); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("%.20q: %v", tok, err)
		}
	}
	if st.lookups.Load() != before {
		t.Error("a token that is not shaped as a key reached the store")
	}
}

// FuzzAuthenticate: any token is answered with an error of the package's
// (or a key), never a panic, and one not shaped as a secret never reaches
// the store.
func FuzzAuthenticate(f *testing.F) {
	st := &countingStore{MemStore: keys.NewMemStore()}
	svc := keys.NewService(keys.Config{Store: st})
	defer svc.Close(context.Background())
	good, _ := svc.Create(context.Background(), keys.Spec{Name: "g", Limits: keys.Limits{BudgetPeriod: keys.PeriodDay}})
	for _, s := range []string{good.Secret, "wgk_", "wgk_\x00", "", "wgk_" + strings.Repeat("é", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		before := st.lookups.Load()
		k, err := svc.Authenticate(context.Background(), tok)
		if err == nil {
			if tok != good.Secret || k.ID != good.Key.ID {
				t.Fatalf("%q opened key %v", tok, k)
			}
			return
		}
		if !errors.Is(err, keys.ErrNotFound) && !errors.Is(err, keys.ErrBusy) {
			t.Fatalf("%q: %v", tok, err)
		}
		if !keys.LooksLikeSecret(tok) && st.lookups.Load() != before {
			t.Fatalf("%q reached the store", tok)
		}
	})
}
