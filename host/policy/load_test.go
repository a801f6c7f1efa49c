package policy

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wabin/wasm"

	"github.com/wingman-app/wingate/host/internal/wasmcode"
	"github.com/wingman-app/wingate/sdk/abi"
)

func TestLoadRefusesBrokenModules(t *testing.T) {
	rt := testRuntime(t)
	tests := []struct {
		name   string
		mutate func(m *wasm.Module)
		item   string   // LoadError.Item
		want   []string // substrings of the message
	}{
		{
			name:   "wrong ABI major version",
			mutate: func(m *wasm.Module) { m.ExportSection[0].Name = "wingate_abi_v2" },
			item:   "export wingate_abi_v1",
			want:   []string{"wingate_abi_v2", "different major ABI version"},
		},
		{
			name:   "wrong ABI minor version",
			mutate: func(m *wasm.Module) { m.CodeSection[0].Body = body(i32const(7)) },
			item:   "abi version",
			want:   []string{"want minor version 0", "found 1.7"},
		},
		{
			name:   "missing export",
			mutate: func(m *wasm.Module) { m.ExportSection = append(m.ExportSection[:4], m.ExportSection[5:]...) },
			item:   "export wingate_decide",
			want:   []string{"want func(i32, i32) -> i64", "found no such export"},
		},
		{
			name:   "wrong signature",
			mutate: func(m *wasm.Module) { m.FunctionSection[4] = 2 },
			item:   "export wingate_decide",
			want:   []string{"want func(i32, i32) -> i64", "found func(i32) -> i64"},
		},
		{
			name: "disallowed import module",
			mutate: func(m *wasm.Module) {
				addImport(m, "env", "abort", tVoid)
			},
			item: "import env.abort",
			want: []string{`found module "env"`},
		},
		{
			// The guard's refill function is the host's alone: a guest
			// calling it could refill its own budget past the deadline.
			name: "import of the guard's internal module",
			mutate: func(m *wasm.Module) {
				addImport(m, internalModule, refillName, &wasm.FunctionType{Params: []wasm.ValueType{i32}})
			},
			item: "import wingate_internal.refill",
			want: []string{`found module "wingate_internal" (reserved for the host's guard)`},
		},
		{
			name: "disallowed WASI call",
			mutate: func(m *wasm.Module) {
				addImport(m, wasiModule, "sock_accept", tI32x2I6)
			},
			item: "import wasi_snapshot_preview1.sock_accept",
			want: []string{"disallowed WASI call"},
		},
		{
			name: "host function with wrong signature",
			mutate: func(m *wasm.Module) {
				addImport(m, abi.HostModule, abi.ImportLog, tI32I32)
			},
			item: "import wingate.log",
			want: []string{"want func(i32, i32, i32)", "found func(i32) -> i32"},
		},
		{
			name:   "memory maximum over the cap",
			mutate: func(m *wasm.Module) { m.MemorySection = &wasm.Memory{Min: 1, Max: 1 << 16, IsMaxEncoded: true} },
			item:   "memory",
			want:   []string{"maximum at most 1024 pages", "found 65536 pages"},
		},
		{
			name:   "no handler registered",
			mutate: func(m *wasm.Module) { m.CodeSection[1].Body = body(i32const(0)) },
			item:   "export wingate_kinds",
			want:   []string{"register handlers in init()"},
		},
		{
			name:   "reserved export",
			mutate: func(m *wasm.Module) { m.ExportSection[0].Name = stopGlobalName },
			item:   "export " + stopGlobalName,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := abiModule(0)
			tt.mutate(m)
			v, err := rt.Load(context.Background(), Spec{Name: "broken"}, encode(m))
			if err == nil {
				v.Close()
				t.Fatal("Load succeeded, want a *LoadError")
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %T %v, want *LoadError", err, err)
			}
			if le.Item != tt.item || le.Policy != "broken" {
				t.Errorf("Item, Policy = %q, %q; want %q, broken (err: %v)", le.Item, le.Policy, tt.item, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// addImport prepends a function import, shifting function indexes.
func addImport(m *wasm.Module, module, name string, ft *wasm.FunctionType) {
	m.TypeSection = append(m.TypeSection, ft)
	m.ImportSection = append(m.ImportSection, &wasm.Import{Type: wasm.ExternTypeFunc, Module: module, Name: name, DescFunc: uint32(len(m.TypeSection) - 1)})
	for _, e := range m.ExportSection {
		if e.Type == wasm.ExternTypeFunc {
			e.Index++
		}
	}
}

func TestLoadHandAssembledModule(t *testing.T) {
	rt := testRuntime(t)
	v, err := rt.Load(context.Background(), Spec{Name: "tiny", MinInstances: 1, Deadline: 10 * time.Second}, encode(abiModule(0)))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got := v.Kinds(); len(got) != 1 || got[0] != abi.KindRoute {
		t.Errorf("Kinds = %v, want [route]", got)
	}
	// Its decide returns an error status: a direct call reports ErrPolicy.
	_, err = v.Route(context.Background(), &abi.RouteRequest{Message: "hi"})
	if !errors.Is(err, ErrPolicy) {
		t.Errorf("Route err = %v, want ErrPolicy", err)
	}
	if _, err := v.Cache(context.Background(), &abi.CacheRequest{}); !errors.Is(err, ErrKind) {
		t.Errorf("Cache err = %v, want ErrKind", err)
	}
}

func TestLoadRefusesInitError(t *testing.T) {
	rt := testRuntime(t)
	_, err := rt.Load(context.Background(), Spec{Name: "cfg", Config: []byte(`{"mode":"badinit"}`)}, testGuest(t))
	var le *LoadError
	if !errors.As(err, &le) || le.Item != "init" || !strings.Contains(err.Error(), "bad configuration") {
		t.Fatalf("err = %v, want a LoadError for init naming the guest's message", err)
	}
}

func TestLoadRefusesGarbage(t *testing.T) {
	rt := testRuntime(t)
	_, err := rt.Load(context.Background(), Spec{Name: "junk"}, []byte("not wasm"))
	var le *LoadError
	if !errors.As(err, &le) || le.Item != "module" {
		t.Fatalf("err = %v, want a LoadError for module", err)
	}
}

// TestLoadRefusesHugeCounts: modules of a few dozen bytes that declare
// vectors of billions of entries are refused before the decoder allocates
// for them, with a LoadError, and without the host allocating more than a
// little memory.
func TestLoadRefusesHugeCounts(t *testing.T) {
	header := []byte("\x00asm\x01\x00\x00\x00")
	section := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0x0f} // 2^32 - 1
	oneFunc := wasmcode.Cat(section(1, 0x01, 0x60, 0x00, 0x00), section(3, 0x01, 0x00))
	cases := map[string][]byte{
		"exports":     wasmcode.Cat(header, section(7, append(huge, 0x00)...)),
		"types":       wasmcode.Cat(header, section(1, append(huge, 0x60)...)),
		"type params": wasmcode.Cat(header, section(1, append([]byte{0x01, 0x60}, append(huge, 0x7f)...)...)),
		"locals":      wasmcode.Cat(header, oneFunc, section(10, append([]byte{0x01, 0x09, 0x01}, append(huge, 0x7f, 0x0b)...)...)),
		"data bytes": wasmcode.Cat(header, section(5, 0x01, 0x00, 0x01),
			section(11, append([]byte{0x01, 0x00, 0x41, 0x00, 0x0b}, append(huge, 0x01)...)...)),
		"element entries": wasmcode.Cat(header, oneFunc, section(4, 0x01, 0x70, 0x00, 0x01),
			section(9, append([]byte{0x01, 0x00, 0x41, 0x00, 0x0b}, append(huge, 0x00)...)...)),
		"function names": wasmcode.Cat(header, section(0, append([]byte{0x04, 'n', 'a', 'm', 'e', 0x01, 0x06}, append(huge, 0x00)...)...)),
	}
	rt := testRuntime(t)
	for name, bin := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := rt.Load(context.Background(), Spec{Name: "huge"}, bin)
			runtime.ReadMemStats(&after)
			var le *LoadError
			if !errors.As(err, &le) || le.Item != "module" || !(errors.Is(err, errBounds) || strings.Contains(err.Error(), "locals")) {
				t.Fatalf("err = %v, want a LoadError for module from the bounds check", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("loading a %d-byte module allocated %d MiB", len(bin), grew>>20)
			}
		})
	}
}
