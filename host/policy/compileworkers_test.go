package policy

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/sdk/abi"
)

// TestCompileWorkersSameMachineCode: a module compiled on several
// goroutines (WithCompileWorkers, as a server starting up compiles) is
// the machine code compiled on one: the compilation caches the two
// runtimes fill hold the same bytes, and a version loaded through either
// answers a decision alike. The module is the echo route policy with 200
// more functions (counted loops), enough for every worker to take some.
func TestCompileWorkersSameMachineCode(t *testing.T) {
	m := echoRouteModule()
	m.TypeSection = append(m.TypeSection, tI32I32)
	spin := loopModule().CodeSection[0]
	for range 200 {
		m.FunctionSection = append(m.FunctionSection, wasm.Index(len(m.TypeSection)-1))
		m.CodeSection = append(m.CodeSection, spin)
	}
	bin := encode(m)
	load := func(ctx context.Context) (map[string][]byte, *Version) {
		dir := t.TempDir()
		rt := newRuntime(t, Options{CacheDir: dir})
		v, err := rt.Load(ctx, Spec{Name: "echo", Config: []byte("cfg-7"), MinInstances: 1, MaxInstances: 1}, bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		files := map[string][]byte{}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				b, rerr := os.ReadFile(p)
				if rerr != nil {
					t.Fatal(rerr)
				}
				rel, _ := filepath.Rel(dir, p)
				files[rel] = b
			}
			return err
		})
		return files, v
	}
	serial, vs := load(context.Background())
	parallel, vp := load(WithCompileWorkers(context.Background(), 4))
	if len(serial) == 0 {
		t.Fatal("the serial compilation left nothing in its compilation cache")
	}
	if len(parallel) != len(serial) {
		t.Fatalf("compilation caches: %d files serially, %d with workers", len(serial), len(parallel))
	}
	for name, b := range serial {
		if !bytes.Equal(parallel[name], b) {
			t.Errorf("%s: %d bytes serially, %d with workers, contents differ", name, len(b), len(parallel[name]))
		}
	}
	for _, v := range []*Version{vs, vp} {
		d, err := v.Route(context.Background(), &abi.RouteRequest{Message: "hello"})
		if err != nil || d.Tier != abi.TierEconomy || d.Reason != "cfg-7" {
			t.Errorf("decision %+v, %v; want economy with the reason cfg-7", d, err)
		}
	}
}

// BenchmarkCompileWorkers compiles the repository's route policy with no
// compilation cache on one goroutine (the baseline) and on GOMAXPROCS
// (a server starting up): the ratio of the two is what start-up gains
// per module. An op is a whole compilation (seconds).
func BenchmarkCompileWorkers(b *testing.B) {
	wasm, _ := repositoryPolicy(b, abi.KindRoute)
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			ctx := WithCompileWorkers(context.Background(), workers)
			for b.Loop() {
				rt, err := NewRuntime(context.Background(), Options{CacheDir: "off", Logger: discardLogger()})
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := rt.compile(ctx, "route", "", wasm); err != nil {
					b.Fatal(err)
				}
				rt.Close(context.Background())
			}
		})
	}
}
