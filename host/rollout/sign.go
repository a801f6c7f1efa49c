package rollout

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Signature format
//
// A policy signature is detached: it travels beside the module, never
// inside it. It is the Ed25519 signature (RFC 8032, pure Ed25519) of the
// 32 raw bytes of the SHA-256 digest of the module's .wasm bytes, written
// as standard base64 (with padding) on one line: 88 characters. Keys are
// written the same way: a public key is the base64 of its 32 bytes, a
// private key the base64 of its 32-byte seed. Surrounding white space is
// ignored when reading any of the three, so files ending in a newline work.

// ErrSignature is returned (wrapped) when a signature is missing, malformed
// or does not match the module.
var ErrSignature = errors.New("rollout: bad signature")

// GenerateKey returns a new Ed25519 key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("rollout: generate key: %w", err)
	}
	return pub, priv, nil
}

// EncodePublicKey writes a public key in the documented text form.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// EncodePrivateKey writes a private key (its seed) in the documented text form.
func EncodePrivateKey(priv ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(priv.Seed())
}

// ParsePublicKey reads a public key in the documented text form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("rollout: public key: want base64 of %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// ParsePrivateKey reads a private key (seed) in the documented text form.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("rollout: private key: want base64 of a %d-byte seed", ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// Sign returns the detached signature of wasm in the documented text form.
func Sign(priv ed25519.PrivateKey, wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, sum[:]))
}

// Verify checks the detached signature sig of wasm against pub. Errors wrap
// ErrSignature and say what is wrong.
func Verify(pub ed25519.PublicKey, wasm []byte, sig string) error {
	sig = strings.TrimSpace(sig)
	if sig == "" {
		return fmt.Errorf("%w: missing: a signature is required by the configured public key", ErrSignature)
	}
	b, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(b) != ed25519.SignatureSize {
		return fmt.Errorf("%w: malformed: want base64 of %d bytes", ErrSignature, ed25519.SignatureSize)
	}
	sum := sha256.Sum256(wasm)
	if !ed25519.Verify(pub, sum[:], b) {
		return fmt.Errorf("%w: does not match the module and the configured public key", ErrSignature)
	}
	return nil
}
