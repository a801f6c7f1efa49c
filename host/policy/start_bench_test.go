package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkInstanceStart measures starting one instance of each shipped
// policy (instantiate, _initialize, the ABI checks and the policy's init
// with its configuration), the test guest as the baseline. Needs
// `go generate ./policies`.
func BenchmarkInstanceStart(b *testing.B) {
	rt := testRuntime(b)
	ctx := context.Background()
	b.Run("guest", func(b *testing.B) {
		v := loadGuest(b, rt, "ok", "start", Spec{Name: "start-guest"})
		benchStart(b, v)
	})
	dir := filepath.Join("..", "..", "policies")
	f, err := ReadPoliciesFile(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range f.Policies {
		wasm, err := os.ReadFile(filepath.Join(dir, p.File))
		if err != nil {
			b.Skipf("%v (run go generate ./policies)", err)
		}
		b.Run(p.Name, func(b *testing.B) {
			v, err := rt.Load(ctx, p.Spec(), wasm)
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			benchStart(b, v)
		})
	}
}

func benchStart(b *testing.B, v *Version) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		in, err := v.newInstance(ctx)
		if err != nil {
			b.Fatal(err)
		}
		v.rt.untrack(in)
		in.close()
	}
}
