package llm

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// PoolConfig sizes and bounds the connection pool of one provider's
// HTTP client. Zero fields take the defaults.
type PoolConfig struct {
	// MaxIdleConnsPerHost is how many idle connections to the provider
	// are kept for reuse (default DefaultMaxIdleConnsPerHost). It should
	// be at least the number of calls in flight at once: each call over
	// it opens a new connection, and Go's default of 2 makes a busy
	// gateway open one per call.
	MaxIdleConnsPerHost int
	// DialTimeout bounds a TCP connect (default 10 s), TLSHandshakeTimeout
	// the TLS handshake (10 s); IdleConnTimeout closes a connection idle
	// that long (90 s). A call as a whole is bounded by its context.
	DialTimeout         time.Duration
	TLSHandshakeTimeout time.Duration
	IdleConnTimeout     time.Duration
	// TLS, when set, configures TLS (a private CA's roots); nil: the
	// system's.
	TLS *tls.Config
}

// DefaultMaxIdleConnsPerHost is PoolConfig's default.
const DefaultMaxIdleConnsPerHost = 64

// Pool is a provider's HTTP client with its own transport: connections
// are kept alive and reused, HTTP/2 is used where the server offers it
// (one connection then carries many calls), and every new TCP connection
// is counted.
type Pool struct {
	Client *http.Client
	opened atomic.Int64
}

// NewPool returns a client with a transport of its own sized by cfg. It
// honours the proxy environment variables as Go's default transport does.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.TLSHandshakeTimeout <= 0 {
		cfg.TLSHandshakeTimeout = 10 * time.Second
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 90 * time.Second
	}
	p := &Pool{}
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				p.opened.Add(1)
			}
			return c, err
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no cap across hosts: one provider, one host
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		TLSHandshakeTimeout:   cfg.TLSHandshakeTimeout,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       cfg.TLS,
	}
	p.Client = &http.Client{Transport: t}
	return p
}

// Opened returns how many TCP connections the pool has opened.
func (p *Pool) Opened() int64 { return p.opened.Load() }

// CloseIdle closes the pool's idle connections.
func (p *Pool) CloseIdle() { p.Client.CloseIdleConnections() }
