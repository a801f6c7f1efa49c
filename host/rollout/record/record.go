// Package record holds a stored policy version (Record, its Status) and
// the Store interface that keeps versions. It imports no runtime: the
// rollout manager (host/rollout) drives a Store, and the backends
// (rollout.MemStore, host/store/pgpolicy) implement it without importing
// the manager or the wasm runtime.
package record

import (
	"context"
	"encoding/json"
	"errors"
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
