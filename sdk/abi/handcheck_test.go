package abi_test

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// cat concatenates byte fields; the tables below spell out each field so
// that the vectors are checked against the layout of sdk/ABI.md by hand,
// not only against the encoder that produced them.
func cat(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestGoldenHandChecked(t *testing.T) {
	tests := []struct {
		file, name string
		want       []byte
	}{
		{"cache_request.json", "typical", cat(
			"\x03\x00\x00\x00", "GET", // method
			"\x19\x00\x00\x00", "/api/users/:id/reputation", // route (25 bytes)
			"\x18\x00\x00\x00", "/api/users/42/reputation", // path (24 bytes)
			"\x00\x00\x00\x00",       // query ""
			"\x02\x00\x00\x00", "42", // user
		)},
		{"cache_request.json", "empty", cat(
			"\x00\x00\x00\x00", "\x00\x00\x00\x00", "\x00\x00\x00\x00", "\x00\x00\x00\x00", "\x00\x00\x00\x00",
		)},
		{"cache_decision.json", "typical", cat(
			"\x01",                       // action lookup
			"\x06\x00\x00\x00", "rep:42", // key
			"\x84\x03\x00\x00", // ttl_s 900
			"\x01",             // scope user
			"\x3c\x00\x00\x00", // stale_s 60
			"\x01\x00\x00\x00", // 1 tag
			"\x07\x00\x00\x00", "user:42",
		)},
		{"cache_decision.json", "empty", cat(
			"\x00", "\x00\x00\x00\x00", "\x00\x00\x00\x00", "\x00", "\x00\x00\x00\x00", "\x00\x00\x00\x00",
		)},
		{"route_request.json", "typical", cat(
			"\x11\x00\x00\x00", "hey, how are you?", // message (17 bytes)
			"\x00",             // purpose chat
			"\x03\x00\x00\x00", // history_turns 3
			"\x78\x00\x00\x00", // history_tokens 120
		)},
		{"route_decision.json", "typical", cat(
			"\x01",                             // tier standard
			"\x00\x00\x00\x00\x00\x00\xe0\x3f", // score 0.5 (float64 bits 0x3fe0000000000000, little-endian)
			"\x08\x00\x00\x00", "coaching",     // reason
		)},
		{"route_decision.json", "premium", cat(
			"\x02", "\x00\x00\x00\x00\x00\x00\xf0\x3f", // score 1.0
			"\x1c\x00\x00\x00", "assessment with long history",
		)},
		{"compress_request.json", "unicode", cat(
			"\x64\x00\x00\x00",          // budget_tokens 100
			"\x0f\x00\x00\x00", "今天怎么样", // query: 5 CJK runes, 3 bytes each
			"\x01\x00\x00\x00",                       // 1 message
			"\x06\x00\x00\x00", "\xc3\xa9t\xc3\xa91", // id "été1"
			"\x00",                                                      // role user
			"\x07\x00\x00\x00",                                          // tokens 7
			"\x13\x00\x00\x00", "J'ai r\xc3\xa9ussi ! \xf0\x9f\x8e\x89", // text: 19 bytes (é is 2, 🎉 is 4)
		)},
		{"compress_decision.json", "typical", cat(
			"\x02\x00\x00\x00", // 2 kept indexes
			"\x00\x00\x00\x00", "\x02\x00\x00\x00",
			"\x00\x00\x00\x00", // summary ""
			"\x0f\x00\x00\x00", // tokens 15
		)},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.name, func(t *testing.T) {
			var found bool
			for _, gc := range readGolden(t, tt.file) {
				if gc.Name != tt.name {
					continue
				}
				found = true
				got, err := hex.DecodeString(gc.Hex)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.want) {
					t.Errorf("golden hex\n got %x\nwant %x", got, tt.want)
				}
			}
			if !found {
				t.Fatalf("no case %q in %s", tt.name, tt.file)
			}
		})
	}
}
