// Package sse decodes Server-Sent Events streams as model providers send
// them (text/event-stream): "event:", "data:", "id:" and "retry:" fields,
// comments, multi-line data, CRLF or LF line ends.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxEventBytes caps one event's data so a hostile or broken stream cannot
// grow memory without bound.
const MaxEventBytes = 1 << 20

// ErrTooLarge is returned for an event whose data passes MaxEventBytes.
var ErrTooLarge = errors.New("sse: event too large")

// Event is one dispatched event.
type Event struct {
	Event string // the event type; empty means "message"
	Data  string // data lines joined by "\n"
	ID    string
}

// Decoder reads events from a stream. Not safe for concurrent use.
type Decoder struct {
	r    *bufio.Reader
	data bytes.Buffer
	line []byte
}

// NewDecoder returns a decoder reading r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 16<<10)}
}

// Next returns the next event. At the end of the stream it returns io.EOF
// when the stream ended between events, and io.ErrUnexpectedEOF when it
// ended inside one (a broken stream).
func (d *Decoder) Next() (Event, error) {
	var ev Event
	d.data.Reset()
	hasData, pending := false, false
	for {
		line, err := d.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if pending {
					return Event{}, io.ErrUnexpectedEOF
				}
				return Event{}, io.EOF
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if !pending {
				continue
			}
			if !hasData {
				// An event without data is not dispatched.
				ev, pending = Event{}, false
				continue
			}
			ev.Data = d.data.String()
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		pending = true
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			ev.Event = string(value)
		case "data":
			if hasData {
				d.data.WriteByte('\n')
			}
			if d.data.Len()+len(value) > MaxEventBytes {
				return Event{}, ErrTooLarge
			}
			d.data.Write(value)
			hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID = string(value)
			}
		}
	}
}

// readLine returns one line without its end (LF, CRLF or CR), capped at
// MaxEventBytes. A final line without an end is returned with io.EOF only
// when empty, so a stream cut mid-line counts as inside an event.
func (d *Decoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(d.line) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch b {
		case '\n':
			return d.line, nil
		case '\r':
			if nb, err := d.r.Peek(1); err == nil && nb[0] == '\n' {
				d.r.ReadByte()
			}
			return d.line, nil
		}
		if len(d.line) >= MaxEventBytes {
			return nil, fmt.Errorf("sse: line: %w", ErrTooLarge)
		}
		d.line = append(d.line, b)
	}
}
