package policy

import (
	"errors"
	"fmt"
)

// maxLocals bounds the locals one function may declare (the limit
// wasmtime applies); a Go guest's functions declare a few dozen.
const maxLocals = 50_000

// checkBounds walks a module's sections the way the decoder will and
// rejects any vector count or byte length larger than the bytes left to
// hold it, and any function declaring more than maxLocals locals. The
// decoder allocates by the declared count before reading the entries, so
// without this a 100-byte upload declaring a billion exports (or a
// function with four billion locals) made the host allocate gigabytes.
// Every entry of every vector takes at least one byte, so a count within
// the bytes left costs at most a few times the module's own size.
//
// It also sums the data segments' bytes, so that prepare refuses a module
// over Options.MaxDataBytes before the decoder copies every segment: a
// 9 MiB data upload grew the server's RSS by 58 MB when the check came
// after decoding.
func checkBounds(bin []byte) (dataBytes uint64, err error) {
	if len(bin) < 8 {
		return 0, errors.New("shorter than the WebAssembly header")
	}
	s := &scanner{b: bin, pos: 8}
	for s.err == nil && s.pos < len(bin) {
		id := s.byte()
		size := s.length()
		if s.err != nil {
			break
		}
		sec := &scanner{b: bin[:s.pos+size], pos: s.pos}
		dataBytes += sec.section(id)
		if sec.err != nil {
			return 0, fmt.Errorf("section %d at offset %d: %w", id, s.pos, sec.err)
		}
		s.pos += size
	}
	return dataBytes, s.err
}

// scanner is a codeReader walking a module's sections.
type scanner = codeReader

var errBounds = errors.New("count or length larger than the bytes left")

func (s *scanner) u32() uint32 { return uint32(s.leb(5)) }

// length reads a count or byte length that must fit in what is left.
func (s *scanner) length() int {
	n := s.leb(5)
	if s.err == nil && n > uint64(len(s.b)-s.pos) {
		s.fail(errBounds)
		return 0
	}
	return int(n)
}

func (s *scanner) name() { s.skip(s.length()) }

func (s *scanner) limits() {
	if f := s.byte(); f&1 != 0 {
		s.u32()
		s.u32()
	} else {
		s.u32()
	}
}

// constExpr skips a constant expression up to its end.
func (s *scanner) constExpr() {
	for s.err == nil {
		switch op := s.byte(); op {
		case 0x0b:
			return
		case 0x41, 0x23, 0xd2: // i32.const, global.get, ref.func
			s.leb(5)
		case 0x42: // i64.const
			s.leb(10)
		case 0x43:
			s.skip(4)
		case 0x44:
			s.skip(8)
		case 0xd0: // ref.null t
			s.byte()
		case 0xfd: // v128.const
			s.u32()
			s.skip(16)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		default:
			s.fail(fmt.Errorf("instruction 0x%02x in a constant expression", op))
		}
	}
}

func (s *scanner) vector(entry func()) {
	for n := s.length(); n > 0 && s.err == nil; n-- {
		entry()
	}
}

// section walks one section; for the data section it returns the bytes
// of its segments.
func (s *scanner) section(id byte) (dataBytes uint64) {
	switch id {
	case 0: // custom
		s.customSection()
	case 1: // types
		s.vector(func() {
			s.byte() // 0x60
			s.skip(s.length())
			s.skip(s.length())
		})
	case 2: // imports
		s.vector(func() {
			s.name()
			s.name()
			switch s.byte() {
			case 0:
				s.u32()
			case 1:
				s.byte()
				s.limits()
			case 2:
				s.limits()
			case 3:
				s.byte()
				s.byte()
			default:
				s.fail(errors.New("unknown import kind"))
			}
		})
	case 3: // functions
		s.vector(func() { s.u32() })
	case 4: // tables
		s.vector(func() { s.byte(); s.limits() })
	case 5: // memories
		s.vector(s.limits)
	case 6: // globals
		s.vector(func() { s.byte(); s.byte(); s.constExpr() })
	case 7: // exports
		s.vector(func() { s.name(); s.byte(); s.u32() })
	case 8, 12: // start, data count
		s.u32()
	case 9: // elements
		s.vector(s.element)
	case 10: // code
		s.vector(func() {
			size := s.length()
			if s.err != nil {
				return
			}
			body := &scanner{b: s.b[:s.pos+size], pos: s.pos}
			var locals uint64
			body.vector(func() {
				locals += uint64(body.u32())
				body.byte()
			})
			if body.err == nil && locals > maxLocals {
				body.fail(fmt.Errorf("a function declares %d locals (at most %d)", locals, maxLocals))
			}
			if body.err != nil {
				s.fail(body.err)
			}
			s.pos += size
		})
	case 11: // data
		s.vector(func() {
			switch s.u32() {
			case 0:
				s.constExpr()
			case 1:
			case 2:
				s.u32()
				s.constExpr()
			default:
				s.fail(errors.New("unknown data segment kind"))
			}
			n := s.length()
			dataBytes += uint64(n)
			s.skip(n)
		})
	default:
		s.fail(errors.New("unknown section"))
	}
	return dataBytes
}

func (s *scanner) element() {
	flags := s.u32()
	if flags > 7 {
		s.fail(errors.New("unknown element segment kind"))
		return
	}
	if flags&1 == 0 { // active
		if flags&2 != 0 {
			s.u32() // table index
		}
		s.constExpr()
	}
	if flags&3 != 0 {
		s.byte() // element kind or reference type
	}
	if flags&4 != 0 {
		s.vector(s.constExpr)
	} else {
		s.vector(func() { s.u32() })
	}
}

// customSection checks the "name" section, which the decoder reads;
// other custom sections are only skipped.
func (s *scanner) customSection() {
	start := s.pos
	n := s.length()
	if s.err != nil || string(s.b[s.pos:s.pos+n]) != "name" {
		s.pos = start
		s.name()
		s.pos = len(s.b)
		return
	}
	s.skip(n)
	for s.err == nil && s.pos < len(s.b) {
		id := s.byte()
		size := s.length()
		if s.err != nil {
			return
		}
		sub := &scanner{b: s.b[:s.pos+size], pos: s.pos}
		switch id {
		case 0:
			sub.name()
		case 1:
			sub.vector(func() { sub.u32(); sub.name() })
		case 2:
			sub.vector(func() {
				sub.u32()
				sub.vector(func() { sub.u32(); sub.name() })
			})
		}
		if sub.err != nil {
			s.fail(sub.err)
			return
		}
		s.pos += size
	}
}
