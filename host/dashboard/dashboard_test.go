package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/alert"
	"github.com/wingman-app/wingate/host/observe"
)

func TestAssets(t *testing.T) {
	d := New(Config{})
	for _, tc := range []struct {
		name, ct, has string
	}{
		{"", "text/html; charset=utf-8", `src="/dashboard/assets/app.js"`},
		{"app.js", "text/javascript; charset=utf-8", "EventSource"},
		{"app.css", "text/css; charset=utf-8", "--bg"},
	} {
		b, ct, ok := d.Asset(tc.name)
		if !ok || ct != tc.ct || !strings.Contains(string(b), tc.has) {
			t.Errorf("Asset(%q) = %d bytes, %q, %v", tc.name, len(b), ct, ok)
		}
		if bytes.Contains(b, []byte("http://")) || bytes.Contains(b, []byte("https://")) {
			t.Errorf("asset %q loads something from the network", tc.name)
		}
	}
	for _, name := range []string{"nope.js", "../dashboard.go", "/etc/passwd"} {
		if _, _, ok := d.Asset(name); ok {
			t.Errorf("Asset(%q) found", name)
		}
	}
}

// syncBuffer is an io.Writer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) events() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []State
	for _, block := range strings.Split(s.buf.String(), "\n\n") {
		if !strings.HasPrefix(block, "event: state\ndata: ") {
			continue
		}
		var st State
		if err := json.Unmarshal([]byte(strings.TrimPrefix(block, "event: state\ndata: ")), &st); err == nil {
			out = append(out, st)
		}
	}
	return out
}

func TestStreamPushesStateAndAlerts(t *testing.T) {
	m, err := observe.New(observe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveHTTP("GET", "/api/x", 200, 3*time.Millisecond, time.Now())
	d := New(Config{Metrics: m, Interval: time.Hour}) // only alert changes push after the first
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- d.Stream(context.Background(), bufio.NewWriter(&out)) }()
	waitFor(t, func() bool { return len(out.events()) == 1 })
	st := out.events()[0]
	if len(st.Metrics.Requests.Routes) != 1 || st.Metrics.Requests.Routes[0].Route != "/api/x" {
		t.Fatalf("first state routes = %+v", st.Metrics.Requests.Routes)
	}
	d.Notify(context.Background(), alert.Event{Alert: alert.Alert{Rule: "R", State: alert.StateFiring}})
	waitFor(t, func() bool { return len(out.events()) == 2 })
	if ev := out.events()[1].Events; len(ev) != 1 || ev[0].Rule != "R" {
		t.Errorf("second state events = %+v", ev)
	}
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Stream after Close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stream did not end on Close")
	}
}

func TestStreamEndsWhenClientLeaves(t *testing.T) {
	d := New(Config{Interval: 10 * time.Millisecond})
	err := d.Stream(context.Background(), bufio.NewWriterSize(failWriter{}, 16))
	if err == nil {
		t.Fatal("Stream to a closed client returned nil")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
