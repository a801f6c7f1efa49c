package pgstore

import (
	"context"
	"github.com/wingman-app/wingate/host/keys/keystest"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/store/storetest"
)

// newTestDB creates a database of its own for tb and drops it at the
// end (terminating whatever is still connected); it returns its URL.
func newTestDB(tb testing.TB) string {
	tb.Helper()
	u, drop, err := createDB()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Error(err)
		}
	})
	return u
}

// createDB creates a database of the test's own.
func createDB() (string, func() error, error) {
	return CreateTestDatabase(context.Background(), "wingate_pgstore")
}

// openTestStore opens and migrates a store on a fresh database.
func openTestStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	if cfg.URL == "" {
		cfg.URL = newTestDB(tb)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := s.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, openTestStore(t, Config{}))
}

func TestMigrateIsIdempotentAndVersioned(t *testing.T) {
	s := openTestStore(t, Config{})
	ctx := context.Background()
	again, err := s.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate applied %v, err %v; want nothing", again, err)
	}
	st, err := s.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) < 2 || st[0].Version != 1 || st[len(st)-1].Version != catalogueVersion {
		t.Fatalf("status = %+v", st)
	}
	for _, m := range st {
		if !m.Applied {
			t.Errorf("migration %d %s not applied", m.Version, m.Name)
		}
	}
}

func TestKeysContract(t *testing.T) {
	keystest.Run(t, openTestStore(t, Config{}).Keys())
}
