package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// URLConfig describes a run against one URL: every request is the
// same, built once before the run, and each worker keeps one keep-alive
// connection, so the generator spends a few microseconds per request and
// can drive tens of thousands per second on two cores. Zero fields take
// the defaults noted.
type URLConfig struct {
	// URL is the one endpoint, e.g. http://127.0.0.1:8080/api/challenges
	// (loopback only; plain HTTP).
	URL string
	// Header lines added to every request, e.g. {"Authorization": "Bearer ..."}.
	Header map[string]string
	// Connections is the number of workers, each with one connection;
	// default 100.
	Connections int
	// Rate, when positive, is the constant request rate (open model):
	// request i is due at start + i/Rate and its latency is measured from
	// that intended time, so a server (or a generator) that falls behind
	// shows its backlog as latency instead of hiding it. Zero: closed
	// loop, each worker sends when answered (saturation).
	Rate float64
	// Duration bounds the measured run (default 10 s, at most
	// MaxDuration); Warmup runs the same load first, unmeasured.
	Duration, Warmup time.Duration
	// Timeout bounds one request; default 10 s.
	Timeout time.Duration
}

// URLReport is the outcome of RunURL. Latencies are from the
// intended send time in rate mode, from the send in closed-loop mode.
type URLReport struct {
	URL         string        `json:"url"`
	Rate        float64       `json:"target_rate,omitempty"`
	Connections int           `json:"connections"`
	Duration    time.Duration `json:"duration_ns"`
	// Requests answered 2xx; Non2xx other statuses; Errors failed
	// exchanges (connection or protocol errors, timeouts).
	Requests   int64   `json:"requests"`
	Non2xx     int64   `json:"non_2xx"`
	Errors     int64   `json:"errors"`
	Throughput float64 `json:"throughput_rps"`
	// Late counts requests sent more than a millisecond after their
	// intended time (rate mode): the generator or the server was behind.
	Late int64         `json:"late"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	// FirstError is the first failure seen, for the report.
	FirstError string `json:"first_error,omitempty"`
}

// WriteText writes the report in a few lines.
func (r *URLReport) WriteText(w io.Writer) error {
	mode := "closed loop"
	if r.Rate > 0 {
		mode = fmt.Sprintf("constant rate %.0f/s (latency from the intended send time)", r.Rate)
	}
	_, err := fmt.Fprintf(w, "%s: %s, %d connections, %v\n"+
		"requests %d (%.0f/s), non-2xx %d, errors %d, late %d\n"+
		"latency p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n",
		r.URL, mode, r.Connections, r.Duration, r.Requests, r.Throughput, r.Non2xx, r.Errors, r.Late,
		r.P50, r.P90, r.P99, r.P999, r.Max)
	if err == nil && r.FirstError != "" {
		_, err = fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	return err
}

// RunURL drives cfg.URL and reports its throughput and latency.
func RunURL(ctx context.Context, cfg URLConfig) (*URLReport, error) {
	if cfg.Connections == 0 {
		cfg.Connections = 100
	}
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	switch {
	case cfg.Connections < 1 || cfg.Connections > MaxConnections:
		return nil, fmt.Errorf("loadgen: connections %d: want 1 to %d", cfg.Connections, MaxConnections)
	case cfg.Duration < 0 || cfg.Duration > MaxDuration || cfg.Warmup < 0 || cfg.Warmup > MaxDuration:
		return nil, fmt.Errorf("loadgen: duration and warm-up: want 0 to %v", MaxDuration)
	case cfg.Rate < 0 || cfg.Rate > MaxRate:
		return nil, fmt.Errorf("loadgen: rate %v: want 0 (closed loop) to %d", cfg.Rate, MaxRate)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("loadgen: negative timeout")
	}
	u, err := CheckLoopback(ctx, cfg.URL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("loadgen: %s: the endpoint mode speaks plain HTTP only", cfg.URL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	req, err := buildRequest(u.Host, u.RequestURI(), cfg.Header)
	if err != nil {
		return nil, err
	}
	e := &urlRun{cfg: cfg, addr: addr, req: req}
	if cfg.Warmup > 0 {
		e.phase(ctx, cfg.Warmup)
	}
	st := e.phase(ctx, cfg.Duration)
	rep := &URLReport{URL: cfg.URL, Rate: cfg.Rate, Connections: cfg.Connections, Duration: st.elapsed,
		Requests: st.ok, Non2xx: st.non2xx, Errors: st.errs, Late: st.late, FirstError: st.firstErr,
		P50: st.h.quantile(0.50), P90: st.h.quantile(0.90), P99: st.h.quantile(0.99), P999: st.h.quantile(0.999),
		Max: time.Duration(st.h.max)}
	if st.elapsed > 0 {
		rep.Throughput = float64(st.ok) / st.elapsed.Seconds()
	}
	return rep, nil
}

// buildRequest returns the bytes of the one GET request, refusing header
// names or values that would split it.
func buildRequest(host, uri string, hdr map[string]string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wingate-load\r\n", uri, host)
	for k, v := range hdr {
		if k == "" || bytes.ContainsAny([]byte(k), ":\r\n \t") || bytes.ContainsAny([]byte(v), "\r\n") {
			return nil, fmt.Errorf("loadgen: header %q: not a valid header line", k)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

type urlRun struct {
	cfg  URLConfig
	addr string
	req  []byte
}

type oneURLStats struct {
	h                      histogram
	ok, non2xx, errs, late int64
	firstErr               string
	elapsed                time.Duration
}

func (s *oneURLStats) merge(o *oneURLStats) {
	s.h.merge(&o.h)
	s.ok += o.ok
	s.non2xx += o.non2xx
	s.errs += o.errs
	s.late += o.late
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
}

// phase runs the load for d and returns what the workers saw.
func (e *urlRun) phase(ctx context.Context, d time.Duration) *oneURLStats {
	start := time.Now()
	end := start.Add(d)
	var next atomic.Int64
	var interval float64
	if e.cfg.Rate > 0 {
		interval = float64(time.Second) / e.cfg.Rate
	}
	stats := make([]oneURLStats, e.cfg.Connections)
	var wg sync.WaitGroup
	for w := range e.cfg.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &urlConn{run: e}
			defer c.close()
			st := &stats[w]
			for ctx.Err() == nil {
				var intended time.Time
				if interval > 0 {
					i := next.Add(1) - 1
					intended = start.Add(time.Duration(float64(i) * interval))
					if !intended.Before(end) {
						return
					}
					if wait := time.Until(intended); wait > 0 {
						time.Sleep(wait)
					} else if wait < -time.Millisecond {
						st.late++
					}
				} else {
					intended = time.Now()
					if !intended.Before(end) {
						return
					}
				}
				status, err := c.do()
				switch {
				case err != nil:
					st.errs++
					if st.firstErr == "" {
						st.firstErr = err.Error()
					}
					continue // not a latency: the exchange failed
				case status >= 200 && status < 300:
					st.ok++
				default:
					st.non2xx++
				}
				st.h.record(time.Since(intended))
			}
		}()
	}
	wg.Wait()
	total := &oneURLStats{elapsed: min(time.Since(start), d)}
	for i := range stats {
		total.merge(&stats[i])
	}
	return total
}

// urlConn is one worker's keep-alive connection.
type urlConn struct {
	run  *urlRun
	conn net.Conn
	br   *bufio.Reader
}

func (c *urlConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends the request once and reads the answer, dialling first if
// needed; any failure drops the connection (the next call redials).
func (c *urlConn) do() (int, error) {
	if c.conn == nil {
		d := net.Dialer{Timeout: c.run.cfg.Timeout, Control: loopbackOnly}
		conn, err := d.Dial("tcp", c.run.addr)
		if err != nil {
			return 0, err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	_ = c.conn.SetDeadline(time.Now().Add(c.run.cfg.Timeout))
	if _, err := c.conn.Write(c.run.req); err != nil {
		c.close()
		return 0, err
	}
	status, keep, err := readResponse(c.br)
	if err != nil || !keep {
		c.close()
	}
	return status, err
}

var errResponse = errors.New("loadgen: malformed response")

// readResponse reads one HTTP/1.1 response to a GET from br, discarding
// its body, and reports its status and whether the connection stays open.
// Bodies must be framed by Content-Length (chunked answers are refused).
func readResponse(br *bufio.Reader) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errResponse, trimCRLF(line))
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 || status > 999 {
		return 0, false, fmt.Errorf("%w: status line %q", errResponse, trimCRLF(line))
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection by default
	length := int64(-1)
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h := trimCRLF(line)
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("%w: header line %q", errResponse, h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errResponse, value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false, fmt.Errorf("%w: Transfer-Encoding %q is not supported", errResponse, value)
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	if length < 0 {
		if status == 204 || status == 304 || status < 200 {
			return status, keep, nil
		}
		return 0, false, fmt.Errorf("%w: no Content-Length", errResponse)
	}
	if _, err := br.Discard(int(length)); err != nil {
		return 0, false, err
	}
	return status, keep, nil
}

func trimCRLF(b []byte) []byte {
	return bytes.TrimRight(b, "\r\n")
}

// ErrorRatio is the share of exchanges not answered 2xx; a run with no
// exchange at all counts as failed (1).
func (r *URLReport) ErrorRatio() float64 {
	total := r.Requests + r.Non2xx + r.Errors
	if total == 0 {
		return 1
	}
	return float64(r.Non2xx+r.Errors) / float64(total)
}
