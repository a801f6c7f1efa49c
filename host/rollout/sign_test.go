package rollout_test

import (
	"errors"
	"testing"

	"github.com/wingman-app/wingate/host/rollout"
)

func TestSignVerify(t *testing.T) {
	pub, priv, err := rollout.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherPub, otherPriv, _ := rollout.GenerateKey()
	wasm := []byte("\x00asm\x01\x00\x00\x00module bytes")
	sig := rollout.Sign(priv, wasm)
	if len(sig) != 88 {
		t.Fatalf("signature is %d characters, want 88", len(sig))
	}
	// Keys survive their text form.
	pub2, err := rollout.ParsePublicKey(rollout.EncodePublicKey(pub) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	priv2, err := rollout.ParsePrivateKey(" " + rollout.EncodePrivateKey(priv) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if rollout.Sign(priv2, wasm) != sig {
		t.Fatal("a parsed private key signs differently")
	}
	tests := []struct {
		name string
		pub  []byte
		wasm []byte
		sig  string
		ok   bool
	}{
		{"valid", pub2, wasm, sig, true},
		{"valid with newline", pub, wasm, sig + "\n", true},
		{"missing", pub, wasm, "", false},
		{"malformed", pub, wasm, "not base64!", false},
		{"short", pub, wasm, "AAAA", false},
		{"other key", otherPub, wasm, sig, false},
		{"signed by another key", pub, wasm, rollout.Sign(otherPriv, wasm), false},
		{"other bytes", pub, append([]byte{}, append(wasm, 0)...), sig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rollout.Verify(tt.pub, tt.wasm, tt.sig)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, rollout.ErrSignature) {
				t.Fatalf("error %v does not wrap ErrSignature", err)
			}
		})
	}
	for _, bad := range []string{"", "abc", rollout.EncodePublicKey(pub) + "AA"} {
		if _, err := rollout.ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
		if _, err := rollout.ParsePrivateKey(bad); err == nil {
			t.Errorf("ParsePrivateKey(%q) accepted", bad)
		}
	}
}

// FuzzVerify: signatures and keys come from operators' files and uploads;
// parsing them never panics and a mangled signature never verifies.
func FuzzVerify(f *testing.F) {
	pub, priv, _ := rollout.GenerateKey()
	wasm := []byte("module")
	good := rollout.Sign(priv, wasm)
	f.Add(good, rollout.EncodePublicKey(pub))
	f.Add("", "")
	f.Add("====", "AAAA")
	f.Add(good[:40], rollout.EncodePublicKey(pub)[:20])
	f.Fuzz(func(t *testing.T, sig, key string) {
		k, err := rollout.ParsePublicKey(key)
		if err != nil {
			k = pub
		}
		err = rollout.Verify(k, wasm, sig)
		if err == nil && sig != good && k.Equal(pub) {
			// Only white space around the good signature may verify.
			if len(sig) < len(good) {
				t.Fatalf("signature %q verified", sig)
			}
		}
		_, _ = rollout.ParsePrivateKey(key)
	})
}
