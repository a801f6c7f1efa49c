package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"
)

// Status is where a version stands.
type Status string

// Statuses of a version. A version is stored as inactive, then either
// passes the activation pipeline (active) or not (rejected, with the
// reason). The version an activation replaced becomes previous (the
// rollback target); a version shadowed beside the active one is shadow; a
// version rolled back automatically is quarantined.
const (
	StatusInactive    Status = "inactive"
	StatusActive      Status = "active"
	StatusPrevious    Status = "previous"
	StatusShadow      Status = "shadow"
	StatusQuarantined Status = "quarantined"
	StatusRejected    Status = "rejected"
)

// ErrNotFound is returned by a Store for an unknown version id.
var ErrNotFound = errors.New("rollout: version not found")

// Record is one stored policy version: a module, the kind it serves, its
// configuration, its signature and its status.
type Record struct {
	ID int64 `json:"id"`
	// Digest is the hex SHA-256 of the module's bytes; its first 12
	// digits are the runtime's version label (policy.Digest).
	Digest     string          `json:"digest"`
	Kind       string          `json:"kind"`
	Name       string          `json:"name"`
	CreatedAt  time.Time       `json:"created_at"`
	Config     json.RawMessage `json:"config,omitempty"`
	DeadlineMS float64         `json:"deadline_ms,omitempty"`
	// DefaultTier is the route kind's fallback tier, if set.
	DefaultTier string `json:"default_tier,omitempty"`
	// Signature is the detached signature (sign.go), empty when unsigned.
	Signature string `json:"signature,omitempty"`
	// Cases are the version's bundled case files, merged into one JSON
	// array of policytest cases, run before activation.
	Cases  json.RawMessage `json:"cases,omitempty"`
	Status Status          `json:"status"`
	// Reason says why the version was rejected or quarantined.
	Reason      string    `json:"reason,omitempty"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	// Source says where the version came from: "dir" (the policy
	// directory) or "upload" (the admin API).
	Source string `json:"source,omitempty"`
	Size   int    `json:"size"`
}

// Short returns the runtime's version label of the record (policy.Digest).
func (r Record) Short() string {
	if len(r.Digest) < 12 {
		return r.Digest
	}
	return r.Digest[:12]
}

// Store keeps policy versions and which one is active for each kind. The
// in-memory MemStore serves one instance; a PostgreSQL store
// (host/store/pgpolicy) is shared by a fleet. Implementations are safe for
// concurrent use.
type Store interface {
	// Put stores a new version with its module and sets rec.ID and
	// rec.CreatedAt.
	Put(ctx context.Context, rec *Record, wasm []byte) error
	// Get returns one version.
	Get(ctx context.Context, id int64) (Record, error)
	// Wasm returns a version's module bytes.
	Wasm(ctx context.Context, id int64) ([]byte, error)
	// List returns every version, newest first.
	List(ctx context.Context) ([]Record, error)
	// SetStatus sets a version's status and reason. Setting active this
	// way is refused: use Activate.
	SetStatus(ctx context.Context, id int64, st Status, reason string) error
	// Activate makes id the active version of its kind in one step: the
	// version active before becomes previous, or oldStatus when it is not
	// empty (quarantined after an automatic rollback).
	Activate(ctx context.Context, id int64, oldStatus Status, reason string) error
}

// MemStore is a Store in memory, for one instance.
type MemStore struct {
	mu     sync.Mutex
	recs   map[int64]*Record
	wasm   map[int64][]byte
	nextID int64
	now    func() time.Time
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore {
	return &MemStore{recs: map[int64]*Record{}, wasm: map[int64][]byte{}, now: time.Now}
}

// Put implements Store.
func (s *MemStore) Put(_ context.Context, rec *Record, wasm []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	rec.ID = s.nextID
	rec.CreatedAt = s.now().UTC()
	if rec.Status == "" {
		rec.Status = StatusInactive
	}
	rec.Size = len(wasm)
	c := *rec
	s.recs[rec.ID] = &c
	s.wasm[rec.ID] = wasm
	return nil
}

// Get implements Store.
func (s *MemStore) Get(_ context.Context, id int64) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return Record{}, ErrNotFound
	}
	return *r, nil
}

// Wasm implements Store.
func (s *MemStore) Wasm(_ context.Context, id int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.wasm[id]
	if !ok {
		return nil, ErrNotFound
	}
	return b, nil
}

// List implements Store.
func (s *MemStore) List(_ context.Context) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, nil
}

// SetStatus implements Store.
func (s *MemStore) SetStatus(_ context.Context, id int64, st Status, reason string) error {
	if st == StatusActive {
		return errors.New("rollout: set status active: use Activate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return ErrNotFound
	}
	r.Status, r.Reason = st, reason
	return nil
}

// Activate implements Store.
func (s *MemStore) Activate(_ context.Context, id int64, oldStatus Status, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return ErrNotFound
	}
	if oldStatus == "" {
		oldStatus = StatusPrevious
	}
	for _, o := range s.recs {
		if o.Kind == r.Kind && o.Status == StatusActive && o.ID != id {
			o.Status = oldStatus
			o.Reason = reason
		}
	}
	r.Status, r.Reason = StatusActive, ""
	r.ActivatedAt = s.now().UTC()
	return nil
}

// activeOf returns the active record of kind among recs.
func activeOf(recs []Record, kind string) (Record, bool) {
	for _, r := range recs {
		if r.Kind == kind && r.Status == StatusActive {
			return r, true
		}
	}
	return Record{}, false
}

// rollbackTarget returns the most recently activated previous version of
// kind.
func rollbackTarget(recs []Record, kind string) (Record, bool) {
	var best Record
	found := false
	for _, r := range recs {
		if r.Kind == kind && r.Status == StatusPrevious && (!found || r.ActivatedAt.After(best.ActivatedAt)) {
			best, found = r, true
		}
	}
	return best, found
}
