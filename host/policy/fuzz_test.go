package policy

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"slices"
	"testing"

	"github.com/wingman-app/wingate/sdk/abi"
)

// Fuzz tests for every host decoder of guest bytes: the packed result and
// its bounds, the status byte, each kind's decision with its checks, and
// the loop-guard rewriter and module validation (guest bytes too).

// fakeMemory is a guest memory for readResult.
type fakeMemory []byte

func (m fakeMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m)) {
		return nil, false
	}
	return m[off : off+n], true
}

func FuzzReadResult(f *testing.F) {
	mem := append([]byte{byte(abi.StatusOK)}, abi.AppendRouteDecision(nil, &abi.RouteDecision{Tier: 1, Score: 0.5, Reason: "r"})...)
	f.Add(abi.PackResult(0, uint32(len(mem))), mem)
	f.Add(abi.PackResult(0xffffffff, 0xffffffff), mem)
	f.Add(abi.PackResult(3, 0), mem)
	f.Add(abi.PackResult(0, 2), []byte{byte(abi.StatusError), 'x'})
	f.Fuzz(func(t *testing.T, packed uint64, mem []byte) {
		b, err := readResult(fakeMemory(mem), packed)
		if err != nil {
			return
		}
		ptr, size := abi.UnpackResult(packed)
		if !bytes.Equal(b, mem[ptr:ptr+size]) {
			t.Fatal("view does not match memory")
		}
		body, err := splitPayload(b)
		if err == nil && len(body) != len(b)-1 {
			t.Fatal("body length")
		}
		var rd abi.RouteDecision
		_ = decodeRoute(body, &rd)
	})
}

func FuzzDecodeCacheDecision(f *testing.F) {
	f.Add(abi.AppendCacheDecision(nil, &abi.CacheDecision{Action: abi.CacheLookup, Key: "k", TTLSeconds: 60, Scope: abi.ScopeUser, StaleSeconds: 5, Tags: []string{"user:42"}}))
	f.Add(abi.AppendCacheDecision(nil, &abi.CacheDecision{}))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add([]byte{9, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d abi.CacheDecision
		lim := decisionLimits{maxKey: 8, maxTags: 2, maxTag: 4}
		if err := decodeCache(b, &d, lim); err != nil {
			return
		}
		if d.Action == abi.CacheLookup && d.Key == "" {
			t.Fatal("accepted a lookup without a key")
		}
		if len(d.Key) > lim.maxKey || len(d.Tags) > lim.maxTags {
			t.Fatalf("accepted a key of %d bytes and %d tags", len(d.Key), len(d.Tags))
		}
		for _, tag := range d.Tags {
			if len(tag) > lim.maxTag {
				t.Fatalf("accepted a tag of %d bytes", len(tag))
			}
		}
		if got := abi.AppendCacheDecision(nil, &d); !bytes.Equal(got, b) {
			t.Fatalf("round trip: %x != %x", got, b)
		}
	})
}

func FuzzDecodeRouteDecision(f *testing.F) {
	f.Add(abi.AppendRouteDecision(nil, &abi.RouteDecision{Tier: abi.TierPremium, Score: 1, Reason: "assessment"}))
	f.Add(abi.AppendRouteDecision(nil, &abi.RouteDecision{Score: 2}))
	f.Add([]byte{3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d abi.RouteDecision
		if err := decodeRoute(b, &d); err != nil {
			return
		}
		if !(d.Score >= 0 && d.Score <= 1) || d.Tier > abi.TierPremium {
			t.Fatalf("accepted %+v", d)
		}
	})
}

func FuzzDecodeCompressDecision(f *testing.F) {
	req := abi.CompressRequest{BudgetTokens: 100, Messages: []abi.Message{{ID: "a", Tokens: 40}, {ID: "b", Tokens: 30}, {ID: "c", Tokens: 50}}}
	f.Add(abi.AppendCompressDecision(nil, &abi.CompressDecision{Keep: []uint32{0, 1}, Summary: "s", Tokens: 90}))
	f.Add(abi.AppendCompressDecision(nil, &abi.CompressDecision{Keep: []uint32{1, 0}, Tokens: 70}))
	f.Add(abi.AppendCompressDecision(nil, &abi.CompressDecision{Keep: []uint32{7}, Tokens: 1}))
	f.Add(abi.AppendCompressDecision(nil, &abi.CompressDecision{Tokens: 101}))
	f.Add([]byte{0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d abi.CompressDecision
		if err := decodeCompress(b, &req, &d); err != nil {
			return
		}
		var sum uint32
		for i, k := range d.Keep {
			if int(k) >= len(req.Messages) || (i > 0 && k <= d.Keep[i-1]) {
				t.Fatalf("accepted keep %v", d.Keep)
			}
			sum += req.Messages[k].Tokens
		}
		if d.Tokens > req.BudgetTokens || sum > d.Tokens {
			t.Fatalf("accepted tokens %d (kept %d, budget %d)", d.Tokens, sum, req.BudgetTokens)
		}
	})
}

func FuzzGuardBody(f *testing.F) {
	f.Add(loopModule().CodeSection[0].Body)
	f.Add([]byte{0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b})
	f.Add([]byte{0x03, 0x7f, 0x41, 0x80, 0x01, 0x0b, 0x1a, 0x0b})
	f.Add([]byte{0xfc, 0x0a, 0x00, 0x00, 0xfd, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x0b})
	f.Add([]byte{0x0e, 0x02, 0x00, 0x01, 0x00, 0x0b})
	f.Add([]byte{0x10, 0x01, 0x11, 0x00, 0x00, 0xfc, 0x0b, 0x00, 0x0b})
	count := func(b []byte) (loops, calls, bulk int, err error) {
		err = walkCode(b, func(in instr) {
			switch {
			case in.op == 0x03:
				loops++
			case in.op == 0x10 || in.op == 0x11:
				calls++
			case in.op == 0xfc && (in.sub == 10 || in.sub == 11):
				bulk++
			}
		})
		return
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g := &guardConfig{budget: 3, halt: 4, depth: 5, calls: true, fill: 7, copy: 8,
			skipCall: func(idx uint32) bool { return idx == 1 }}
		out, err := guardBody(b, g)
		if err != nil {
			return
		}
		loops, calls, bulk, _ := count(b)
		oLoops, oCalls, oBulk, err := count(out)
		if err != nil {
			t.Fatalf("guarded body does not decode: %v", err)
		}
		// Loops and calls stay, bulk instructions become calls.
		if oLoops != loops || oCalls != calls+bulk || oBulk != 0 {
			t.Fatalf("loops %d->%d, calls %d->%d, bulk %d->%d", loops, oLoops, calls, oCalls, bulk, oBulk)
		}
		// A second rewrite adds the same checks again (the checks hold
		// no loops or calls of their own).
		again, err := guardBody(out, &guardConfig{budget: 3, halt: 4, depth: 5, fill: noFunc, copy: noFunc})
		if err != nil {
			t.Fatalf("guarded body does not decode: %v", err)
		}
		if (len(again)-len(out))%17 != 0 || (len(again)-len(out))/17 != loops {
			t.Fatalf("second rewrite grew by %d bytes for %d loops", len(again)-len(out), loops)
		}
		// With the refill import: every loop check and guarded call
		// check holds one call of it, and call and ref.func indexes at
		// or above the import move up by one.
		r := &guardConfig{budget: 3, halt: 4, depth: 5, calls: true, fill: 7, copy: 8,
			refill: 2, useRefill: true, shift: true, shiftFrom: 2,
			skipCall: func(idx uint32) bool { return idx == 1 }}
		out, err = guardBody(b, r)
		if err != nil {
			t.Fatalf("guards without refill but not with: %v", err)
		}
		var guarded, refills, want, got []uint32
		walkCode(b, func(in instr) {
			switch {
			case in.op == 0x11 || (in.op == 0x10 && in.imm != 1):
				guarded = append(guarded, 0)
			}
			switch {
			case in.op == 0x10 || in.op == 0x12 || in.op == 0xd2:
				want = append(want, r.funcIndex(uint32(in.imm)))
			case in.op == 0xfc && in.sub == 11:
				want = append(want, r.fill)
			case in.op == 0xfc && in.sub == 10:
				want = append(want, r.copy)
			}
		})
		if err := walkCode(out, func(in instr) {
			if in.op == 0x10 && in.imm == 2 {
				refills = append(refills, 0)
				return
			}
			if in.op == 0x10 || in.op == 0x12 || in.op == 0xd2 {
				got = append(got, uint32(in.imm))
			}
		}); err != nil {
			t.Fatalf("guarded body does not decode: %v", err)
		}
		// An original call of index 2 would count as a refill: that
		// index moves to 3, so none remains.
		if len(refills) != loops+len(guarded) {
			t.Fatalf("%d refill calls for %d loops and %d guarded calls", len(refills), loops, len(guarded))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("function indexes %v, want %v", got, want)
		}
	})
}

func FuzzPrepare(f *testing.F) {
	f.Add(encode(abiModule(0)))
	f.Add(encode(loopModule()))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := prepare("fuzz", b, Options{}.withDefaults().loadLimits())
		if err != nil {
			if _, ok := err.(*LoadError); !ok {
				t.Fatalf("error %T is not a *LoadError", err)
			}
			return
		}
		if len(p.wasm) == 0 {
			t.Fatal("empty rewritten module")
		}
	})
}

// fuzzInstance is an instance with just what the output path needs.
func fuzzInstance(log *slog.Logger, perCall, burst int) *instance {
	rt := &Runtime{opts: Options{LogBytesPerCall: perCall, LogBytesPerSecond: 1, LogBurst: burst}}
	v := &Version{rt: rt, log: log, logBucket: newLogBucket(1, burst)}
	return &instance{v: v, logLeft: perCall}
}

// FuzzGuestOutput drives fd_write's iovec decoding and the output
// quotas with guest bytes: a buffer outside memory is EFAULT before
// anything is written; what is written stays within the quotas; and
// every byte asked for is written, dropped or held in the current line.
func FuzzGuestOutput(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), []byte{0, 0, 0, 0, 12, 0, 0, 0}, 4096)
	f.Add([]byte("\x00\x01\"<>&\n"), []byte{0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0}, 300)
	f.Add([]byte("x"), []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, 1)
	f.Fuzz(func(t *testing.T, mem []byte, vec []byte, perCall int) {
		perCall = 1 + abs(perCall)%(8<<10)
		var logged countingWriter
		log := slog.New(slog.NewTextHandler(&logged, nil))
		in := fuzzInstance(log, perCall, 2*perCall)
		w := &guestWriter{log: log, level: slog.LevelInfo}
		total, errno := writeIovecs(in, w, fakeMemory(mem), vec)
		if errno != 0 {
			if in.v.logWritten.Load() != 0 || in.v.logDropped.Load() != 0 {
				t.Fatal("EFAULT after writing")
			}
			return
		}
		var asked, newlines uint64
		for i := 0; i+8 <= len(vec); i += 8 {
			off, size := binary.LittleEndian.Uint32(vec[i:]), binary.LittleEndian.Uint32(vec[i+4:])
			asked += uint64(size)
			newlines += uint64(bytes.Count(mem[off:off+size], []byte{'\n'}))
		}
		if uint32(asked) != total {
			t.Fatalf("reported %d bytes written, asked %d", total, asked)
		}
		// Newlines end lines and are not text: they may be neither.
		written, dropped := in.v.logWritten.Load(), in.v.logDropped.Load()
		if got := uint64(written+dropped) + uint64(len(w.buf)); got > asked || asked-got > newlines {
			t.Fatalf("written %d + dropped %d + held %d against %d asked with %d newlines", written, dropped, len(w.buf), asked, newlines)
		}
		// Each line costs logLineCost plus at most six bytes a byte of
		// text; the handler adds its own frame (time, level) per line.
		if written > int64(perCall) {
			t.Fatalf("wrote %d bytes of text with a per-call quota of %d", written, perCall)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
