package wasmcode

import (
	"encoding/binary"
	"math"
	"testing"

	wabin "github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"
)

// readSLEB decodes a signed LEB128 number the way the format defines it,
// independently of AppendSLEB.
func readSLEB(b []byte) (v int64, n int) {
	var shift uint
	for n < len(b) {
		c := b[n]
		n++
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, n
		}
	}
	return 0, -1
}

func FuzzLEB(f *testing.F) {
	for _, v := range []int64{0, 1, -1, 63, 64, -64, -65, 127, 128, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v int64) {
		s := AppendSLEB([]byte{0xee}, v)
		if s[0] != 0xee {
			t.Fatal("AppendSLEB overwrote the prefix")
		}
		got, n := readSLEB(s[1:])
		if got != v || n != len(s)-1 {
			t.Fatalf("SLEB %d: decoded %d from %d of %d bytes (% x)", v, got, n, len(s)-1, s[1:])
		}
		if len(s)-1 > 10 {
			t.Fatalf("SLEB %d takes %d bytes", v, len(s)-1)
		}
		u := uint32(v)
		ub := AppendULEB(nil, u)
		back, n2 := binary.Uvarint(ub)
		if back != uint64(u) || n2 != len(ub) || len(ub) > 5 {
			t.Fatalf("ULEB %d: decoded %d from %d of %d bytes", u, back, n2, len(ub))
		}
		// i32.const carries the value modulo 2^32, as a signed 32-bit
		// immediate of at most 5 bytes.
		c := I32Const(v)
		got, n = readSLEB(c[1:])
		if c[0] != 0x41 || got != int64(int32(v)) || n != len(c)-1 || n > 5 {
			t.Fatalf("i32.const %d: % x", v, c)
		}
	})
}

// TestABIModuleDecodes builds a module from the ABI skeleton and reads
// it back with wabin's decoder: the exports name the functions they
// should, at the indexes given.
func TestABIModuleDecodes(t *testing.T) {
	m := &wasm.Module{
		TypeSection:     ABITypes(),
		FunctionSection: append([]wasm.Index{0}, ABIFunctions()...), // one function before the ABI's
		MemorySection:   &wasm.Memory{Min: 1},
		ExportSection:   ABIExports(1),
		DataSection:     []*wasm.DataSegment{DataAt(70000, LE32(1, 0x01020304))},
	}
	for range m.FunctionSection {
		m.CodeSection = append(m.CodeSection, &wasm.Code{Body: Body(I32Const(0))})
	}
	m.CodeSection[3].Body = Body(I64Const(1))
	m.CodeSection[4].Body = Body(Packed(16, 2))
	m.CodeSection[5].Body = Body(LocalGet(1), LocalSet(0), Packed(0xffffffff, 0xffffffff))
	enc := wabin.EncodeModule(m)
	back, err := wabin.DecodeModule(enc, wasm.CoreFeaturesV2)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"wingate_abi_v1": 1, "wingate_kinds": 2, "wingate_buffer": 3, "wingate_init": 4, "wingate_decide": 5, "memory": 0}
	if len(back.ExportSection) != len(want) {
		t.Fatalf("%d exports, want %d", len(back.ExportSection), len(want))
	}
	for _, e := range back.ExportSection {
		if idx, ok := want[e.Name]; !ok || idx != e.Index {
			t.Errorf("export %q at %d, want %d (known: %v)", e.Name, e.Index, idx, ok)
		}
	}
	d := back.DataSection[0]
	if at, _ := readSLEB(d.OffsetExpression.Data); at != 70000 || string(d.Init) != "\x01\x00\x00\x00\x04\x03\x02\x01" {
		t.Fatalf("data segment at %d holding % x", at, d.Init)
	}
	if got := back.CodeSection[4].Body; string(got) != string(Body(Packed(16, 2))) {
		t.Fatalf("decide body % x", got)
	}
}
