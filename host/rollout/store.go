package rollout

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/wingman-app/wingate/host/rollout/record"
)

// The stored version's types live in host/rollout/record, which imports no
// runtime, so that store backends (host/store/pgpolicy) need not import
// this package; these aliases keep the rollout's spelling.
type (
	// Status is record.Status.
	Status = record.Status
	// Record is record.Record.
	Record = record.Record
	// Store is record.Store.
	Store = record.Store
)

// Statuses; see record.Status.
const (
	StatusInactive, StatusActive, StatusPrevious    = record.StatusInactive, record.StatusActive, record.StatusPrevious
	StatusShadow, StatusQuarantined, StatusRejected = record.StatusShadow, record.StatusQuarantined, record.StatusRejected
)

// ErrNotFound is returned by a Store for an unknown version id.
var ErrNotFound = record.ErrNotFound

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
	// Versions of one module (each kind of a bundle, a configuration
	// change) share its bytes: a Go module is a few MiB.
	for id, r := range s.recs {
		if id != rec.ID && r.Digest == rec.Digest && rec.Digest != "" && bytes.Equal(s.wasm[id], wasm) {
			wasm = s.wasm[id]
			break
		}
	}
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

// rollbackTarget returns the version of kind a rollback goes to: version
// to when it was active once and is now previous or inactive, or (to 0)
// the most recently activated previous version.
func rollbackTarget(recs []Record, kind string, to int64) (Record, bool) {
	var best Record
	found := false
	for _, r := range recs {
		if r.Kind != kind {
			continue
		}
		if to != 0 {
			if r.ID == to && !r.ActivatedAt.IsZero() && (r.Status == StatusPrevious || r.Status == StatusInactive) {
				return r, true
			}
			continue
		}
		if r.Status == StatusPrevious && (!found || r.ActivatedAt.After(best.ActivatedAt)) {
			best, found = r, true
		}
	}
	return best, found
}
