package llm_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wingman-app/wingate/host/llm"
	"github.com/wingman-app/wingate/host/llm/openai"
)

// countingListener counts the connections a server accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// fakeOpenAI is an OpenAI-compatible server answering plain and
// streamed calls after a short delay (so that calls overlap), counting
// accepted connections and noting the HTTP major version it is spoken.
type fakeOpenAI struct {
	*httptest.Server
	ln    *countingListener
	proto atomic.Int64
}

func startFakeOpenAI(t *testing.T, tlsH2 bool) *fakeOpenAI {
	f := &fakeOpenAI{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.proto.Store(int64(r.ProtoMajor))
		var req struct {
			Stream bool `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad", 400)
			return
		}
		time.Sleep(2 * time.Millisecond)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"x","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for _, d := range []string{
			`{"id":"x","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"h"},"finish_reason":null}]}`,
			`{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"i"},"finish_reason":"stop"}]}`,
			`{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`,
			`[DONE]`,
		} {
			fmt.Fprintf(w, "data: %s\n\n", d)
			fl.Flush()
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = &countingListener{Listener: ln}
	f.Listener = f.ln
	if tlsH2 {
		f.EnableHTTP2 = true
		f.StartTLS()
	} else {
		f.Start()
	}
	t.Cleanup(f.Close)
	return f
}

// hammer sends rounds rounds of conc concurrent calls through p, every
// other one streamed: the callers of a round start together and the next
// round starts when all are answered, as bursts of chat turns do (between
// rounds every connection is idle). It fails the test on any error.
func hammer(t *testing.T, p llm.Provider, conc, rounds int) {
	for r := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, conc)
		for w := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var onDelta llm.DeltaFunc
				if (w+r)%2 == 1 {
					onDelta = func(string) error { return nil }
				}
				resp, err := p.Complete(context.Background(), &llm.Request{Model: "m", Messages: []llm.Message{{Role: "user", Content: "x"}}}, onDelta)
				if err == nil && resp.Text != "hi" {
					err = fmt.Errorf("text %q", resp.Text)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}

// TestPooledConnections: 40 rounds of 16 concurrent calls, plain and
// streamed, open at most one connection per caller (plus a little
// slack) through the provider's pool, where Go's default transport,
// keeping 2 idle connections per host, closes 14 after each round and
// dials them again in the next. Over TLS the pool speaks HTTP/2: after a
// first call, one connection carries every call.
func TestPooledConnections(t *testing.T) {
	const conc, calls, slack = 16, 40, 4
	base := startFakeOpenAI(t, false)
	def := http.DefaultTransport.(*http.Transport).Clone() // what a bare http.Client uses
	t.Cleanup(def.CloseIdleConnections)
	hammer(t, openai.New(openai.Config{BaseURL: base.URL, HTTPClient: &http.Client{Transport: def}}), conc, calls)
	baseline := base.ln.n.Load()

	srv := startFakeOpenAI(t, false)
	pool := llm.NewPool(llm.PoolConfig{})
	t.Cleanup(pool.CloseIdle)
	hammer(t, openai.New(openai.Config{BaseURL: srv.URL, HTTPClient: pool.Client}), conc, calls)
	pooled := srv.ln.n.Load()
	if pooled > conc+slack || pool.Opened() != pooled {
		t.Errorf("pooled: the server accepted %d connections, the pool counted %d; want at most %d", pooled, pool.Opened(), conc+slack)
	}

	// A pool smaller than the concurrency churns: the setting is what
	// keeps the connections.
	small := startFakeOpenAI(t, false)
	two := llm.NewPool(llm.PoolConfig{MaxIdleConnsPerHost: 2})
	t.Cleanup(two.CloseIdle)
	hammer(t, openai.New(openai.Config{BaseURL: small.URL, HTTPClient: two.Client}), conc, calls)
	if small.ln.n.Load() <= conc+slack {
		t.Errorf("a pool of 2 idle connections opened only %d for %d callers", small.ln.n.Load(), conc)
	}

	tlsSrv := startFakeOpenAI(t, true)
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())
	h2 := llm.NewPool(llm.PoolConfig{TLS: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()})
	h2.Client.Transport.(*http.Transport).TLSClientConfig.RootCAs = roots
	t.Cleanup(h2.CloseIdle)
	h2c := openai.New(openai.Config{BaseURL: tlsSrv.URL, HTTPClient: h2.Client})
	hammer(t, h2c, 1, 1)
	hammer(t, h2c, conc, calls)
	if tlsSrv.proto.Load() != 2 || tlsSrv.ln.n.Load() > 2 {
		t.Errorf("over TLS: HTTP/%d, %d connections; want HTTP/2 on at most 2", tlsSrv.proto.Load(), tlsSrv.ln.n.Load())
	}
	if baseline <= 2*pooled {
		t.Errorf("Go's default transport opened %d connections, the pool %d: the comparison shows nothing", baseline, pooled)
	}
	t.Logf("%d rounds of %d concurrent calls: Go's default transport %d connections, the pool %d, a pool of 2 idle %d, HTTP/2 over TLS %d",
		calls, conc, baseline, pooled, small.ln.n.Load(), tlsSrv.ln.n.Load())
}
