package sse

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func readAll(s string) ([]Event, error) {
	d := NewDecoder(strings.NewReader(s))
	var out []Event
	for {
		ev, err := d.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, ev)
	}
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Event
		wantErr error
	}{
		{"simple", "data: a\n\n", []Event{{Data: "a"}}, nil},
		{"event and id", "event: ping\nid: 7\ndata: {}\n\n", []Event{{Event: "ping", ID: "7", Data: "{}"}}, nil},
		{"multi-line data", "data: a\ndata: b\n\n", []Event{{Data: "a\nb"}}, nil},
		{"crlf", "event: x\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n", []Event{{Event: "x", Data: "1"}, {Data: "2"}}, nil},
		{"cr only", "data: 1\r\rdata: 2\r\r", []Event{{Data: "1"}, {Data: "2"}}, nil},
		{"comments and blank lines", ": hi\n\n\n: keepalive\ndata: z\n\n", []Event{{Data: "z"}}, nil},
		{"no space after colon", "data:x\n\n", []Event{{Data: "x"}}, nil},
		{"field without colon", "data\n\n", []Event{{Data: ""}}, nil},
		{"event without data is dropped", "event: a\n\ndata: b\n\n", []Event{{Data: "b"}}, nil},
		{"unknown fields ignored", "retry: 10\nfoo: bar\ndata: q\n\n", []Event{{Data: "q"}}, nil},
		{"ends inside an event", "data: a\n\ndata: b\n", []Event{{Data: "a"}}, io.ErrUnexpectedEOF},
		{"ends mid-line", "data: a\n\ndata: b", []Event{{Data: "a"}}, io.ErrUnexpectedEOF},
		{"empty", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(tt.in)
			if !errors.Is(err, tt.wantErr) && !(err == nil && tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	_, err := readAll("data: " + strings.Repeat("x", MaxEventBytes+10) + "\n\n")
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func FuzzDecoder(f *testing.F) {
	for _, s := range []string{"data: a\n\n", "event: x\r\ndata: 1\r\n\r\n", ": c\ndata:\ndata: y\n\n", "data: b", "id: \x00\ndata: 1\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		evs, _ := readAll(in)
		total := 0
		for _, ev := range evs {
			total += len(ev.Data)
		}
		if total > len(in) {
			t.Fatalf("decoded %d data bytes from %d input bytes", total, len(in))
		}
	})
}
