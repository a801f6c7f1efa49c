package pgpolicy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/rollout"
	"github.com/wingman-app/wingate/host/store/pgpolicy"
	"github.com/wingman-app/wingate/host/store/pgstore"
)

// The PostgreSQL store is a rollout store and notifier; the package itself
// imports only host/rollout/record (see host/internal/layers).
var (
	_ rollout.Store    = (*pgpolicy.Store)(nil)
	_ rollout.Notifier = (*pgpolicy.Store)(nil)
)

func openTest(t *testing.T) (*pgpolicy.Store, string) {
	t.Helper()
	ctx := context.Background()
	url, drop, err := pgstore.CreateTestDatabase(ctx, "wingate_pgpolicy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drop() })
	b := make([]byte, 4)
	rand.Read(b)
	ch := "wingate_policy_test_" + hex.EncodeToString(b)
	s, err := pgpolicy.Open(ctx, pgpolicy.Config{URL: url, Channel: ch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, url
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	s, url := openTest(t)
	// A second instance migrating the same database is a no-op.
	s2, err := pgpolicy.Open(ctx, pgpolicy.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()

	put := func(kind, name string, wasm []byte) rollout.Record {
		t.Helper()
		r := rollout.Record{Digest: "d-" + name, Kind: kind, Name: name, Config: []byte(`{"a": 1}`), DeadlineMS: 2.5,
			Signature: "sig", Cases: []byte(`[]`), Source: "upload"}
		if err := s.Put(ctx, &r, wasm); err != nil {
			t.Fatal(err)
		}
		if r.ID == 0 || r.CreatedAt.IsZero() || r.Status != rollout.StatusInactive || r.Size != len(wasm) {
			t.Fatalf("put record %+v", r)
		}
		return r
	}
	a := put("cache", "a", []byte("module a"))
	b := put("cache", "b", []byte("module b"))
	c := put("route", "c", []byte("module c"))

	got, err := s.Get(ctx, a.ID)
	if err != nil || got.Name != "a" || string(got.Config) != `{"a": 1}` || got.DeadlineMS != 2.5 || got.Signature != "sig" || got.Size != 8 {
		t.Fatalf("get: %+v %v", got, err)
	}
	if w, err := s.Wasm(ctx, b.ID); err != nil || string(w) != "module b" {
		t.Fatalf("wasm: %q %v", w, err)
	}
	if _, err := s.Get(ctx, 999); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	if _, err := s.Wasm(ctx, 999); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("wasm unknown: %v", err)
	}

	status := func() map[string]rollout.Status {
		recs, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]rollout.Status{}
		for _, r := range recs {
			m[r.Name] = r.Status
		}
		return m
	}
	for _, step := range []struct {
		id   int64
		old  rollout.Status
		want map[string]rollout.Status
	}{
		{a.ID, "", map[string]rollout.Status{"a": "active", "b": "inactive", "c": "inactive"}},
		{c.ID, "", map[string]rollout.Status{"a": "active", "b": "inactive", "c": "active"}},
		{b.ID, "", map[string]rollout.Status{"a": "previous", "b": "active", "c": "active"}},
		{a.ID, rollout.StatusQuarantined, map[string]rollout.Status{"a": "active", "b": "quarantined", "c": "active"}},
	} {
		if err := s.Activate(ctx, step.id, step.old, "why"); err != nil {
			t.Fatal(err)
		}
		got := status()
		for k, v := range step.want {
			if got[k] != v {
				t.Fatalf("after activating %d: statuses %v, want %v", step.id, got, step.want)
			}
		}
	}
	if r, _ := s.Get(ctx, b.ID); r.Reason != "why" {
		t.Fatalf("quarantine reason %q", r.Reason)
	}
	if err := s.SetStatus(ctx, c.ID, rollout.StatusRejected, "bad"); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Get(ctx, c.ID); r.Status != rollout.StatusRejected || r.Reason != "bad" {
		t.Fatalf("set status: %+v", r)
	}
	if err := s.SetStatus(ctx, c.ID, rollout.StatusActive, ""); err == nil {
		t.Fatal("set status active accepted")
	}
	if err := s.Activate(ctx, 999, "", ""); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("activate unknown: %v", err)
	}
}

func TestListenNotify(t *testing.T) {
	s, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Listen(ctx, func() { got <- struct{}{} })
	}()
	// Listen calls fn once when it is listening.
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("not listening")
	}
	if err := s.Notify(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("notification not received")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not return after cancel")
	}
}
