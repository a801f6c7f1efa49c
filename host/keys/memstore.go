package keys

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// MemStore keeps keys and the ledger in process: the store of a first run
// without PostgreSQL, and of one instance only.
type MemStore struct {
	mu     sync.Mutex
	keys   map[string]*memKey
	ledger []Usage
	seen   map[string]bool // request ids in the ledger
}

type memKey struct {
	key        Key
	hash       []byte
	prevHash   []byte
	graceUntil time.Time
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{keys: map[string]*memKey{}, seen: map[string]bool{}} }

var _ Store = (*MemStore)(nil)

func copyKey(k Key) Key {
	k.Models = slices.Clone(k.Models)
	k.Metadata = slices.Clone(k.Metadata)
	return k
}

func (s *MemStore) CreateKey(_ context.Context, k Key, hash []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.keys[k.ID]; dup {
		return fmt.Errorf("%w: key %s exists", ErrInvalid, k.ID)
	}
	s.keys[k.ID] = &memKey{key: copyKey(k), hash: slices.Clone(hash)}
	return nil
}

func (s *MemStore) KeyBySecretHash(_ context.Context, hash []byte, now time.Time) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, mk := range s.keys {
		if bytes.Equal(mk.hash, hash) || (mk.prevHash != nil && bytes.Equal(mk.prevHash, hash) && now.Before(mk.graceUntil)) {
			return copyKey(mk.key), nil
		}
	}
	return Key{}, ErrNotFound
}

func (s *MemStore) get(id string) (*memKey, error) {
	mk, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return mk, nil
}

func (s *MemStore) GetKey(_ context.Context, id string) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mk, err := s.get(id)
	if err != nil {
		return Key{}, err
	}
	return copyKey(mk.key), nil
}

func (s *MemStore) ListKeys(context.Context) ([]Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Key, 0, len(s.keys))
	for _, mk := range s.keys {
		out = append(out, copyKey(mk.key))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func (s *MemStore) RotateKey(_ context.Context, id string, hash []byte, hint string, at, graceUntil time.Time) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mk, err := s.get(id)
	if err != nil {
		return Key{}, err
	}
	mk.prevHash, mk.graceUntil = mk.hash, graceUntil
	mk.hash = slices.Clone(hash)
	mk.key.Hint = hint
	mk.key.RotatedAt = &at
	return copyKey(mk.key), nil
}

func (s *MemStore) RevokeKey(_ context.Context, id string, at time.Time) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mk, err := s.get(id)
	if err != nil {
		return Key{}, err
	}
	if mk.key.RevokedAt == nil {
		mk.key.RevokedAt = &at
	}
	return copyKey(mk.key), nil
}

func (s *MemStore) UpdateKeyLimits(_ context.Context, id string, l Limits) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mk, err := s.get(id)
	if err != nil {
		return Key{}, err
	}
	mk.key.Limits = l
	mk.key.Models = slices.Clone(l.Models)
	return copyKey(mk.key), nil
}

func (s *MemStore) RecordUsage(_ context.Context, rows []Usage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range rows {
		if s.seen[u.RequestID] {
			continue // a retried write
		}
		s.seen[u.RequestID] = true
		s.ledger = append(s.ledger, u)
	}
	return nil
}

func (s *MemStore) KeySpend(_ context.Context, id string, from, to time.Time) (Spend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := Spend{KeyID: id, From: from, To: to}
	for _, u := range s.ledger {
		if u.KeyID != id || u.At.Before(from) || !u.At.Before(to) {
			continue
		}
		sp.add(u)
	}
	return sp, nil
}

func (sp *Spend) add(u Usage) {
	sp.Requests++
	if u.Partial {
		sp.Partial++
	}
	sp.InputTokens += int64(u.InputTokens)
	sp.OutputTokens += int64(u.OutputTokens)
	sp.Cost += u.Cost
}
