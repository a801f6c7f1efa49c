package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/observe"
)

// TestTracesToOTLP sends a request through a server with tracing to an
// OTLP/HTTP receiver and checks that the span arrives, named after the
// route template and continuing the caller's trace.
func TestTracesToOTLP(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	ctx := context.Background()
	tr, err := observe.StartTracing(ctx, os.Getenv, nil)
	if err != nil || tr == nil {
		t.Fatalf("StartTracing = %v, %v", tr, err)
	}
	m, err := observe.New(observe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := New(DefaultConfig(), Deps{Metrics: m, Tracing: tr})
	req := httptest.NewRequest("GET", "/healthz", nil)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	res, err := s.App().Test(req, -1)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /healthz: %v %v", res, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	all := bytes.Join(bodies, nil)
	if len(bodies) == 0 || !bytes.Contains(all, []byte("GET /healthz")) {
		t.Fatalf("no span named GET /healthz among %d OTLP requests", len(bodies))
	}
	id := []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	if !bytes.Contains(all, id) {
		t.Errorf("the span does not continue trace %s", traceID)
	}
}

func TestNoTracingWithoutEndpoint(t *testing.T) {
	tr, err := observe.StartTracing(context.Background(), func(string) string { return "" }, nil)
	if tr != nil || err != nil {
		t.Errorf("StartTracing without an endpoint = %v, %v; want nil, nil", tr, err)
	}
}
