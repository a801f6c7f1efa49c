package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/wingman-app/wingate/host/observe"
	"github.com/wingman-app/wingate/host/server"
)

// Descriptor limits: the server raises its soft RLIMIT_NOFILE to the hard
// one at start (or sets Config.MaxOpenFiles), and derives its connection
// cap from the result, keeping room for everything else that holds a
// descriptor: the database and Redis pools, policy files, the log, the
// listener, the runtime's poller and the connection being refused.

// connHeadroom is how many descriptors of limit the connection cap leaves
// for the rest of the process: an eighth of the limit, at least 256.
func connHeadroom(limit uint64) uint64 { return max(256, limit/8) }

// ConnCap is the default connection cap for a soft descriptor limit: the
// limit less its headroom, at least 16.
func ConnCap(limit uint64) int {
	if limit <= connHeadroom(limit)+16 {
		return 16
	}
	return int(min(limit-connHeadroom(limit), 1<<20))
}

// setNoFile sets the soft descriptor limit to want (zero: the hard limit;
// never above the hard limit) and returns the limits before and after.
func setNoFile(want uint64) (before, after syscall.Rlimit, err error) {
	if err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		return before, before, err
	}
	after = before
	after.Cur = before.Max
	if want > 0 && want < before.Max {
		after.Cur = want
	}
	if after.Cur != before.Cur {
		if err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
			return before, before, err
		}
	}
	err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after)
	return before, after, err
}

// Accept back-off: the first pause after a failed accept, and the longest.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = 500 * time.Millisecond
)

// backoffListener survives running out of descriptors. When Accept fails
// with EMFILE, ENFILE, ENOBUFS or ENOMEM it does not return the error (on
// which the HTTP server would stop serving for good): it sleeps, doubling
// the pause from acceptBackoffMin up to acceptBackoffMax, and tries
// again, while the connections already open are served as before. Every
// such failure is counted (errs); an episode — failures until the next
// accepted connection — is logged once when it starts and once when it
// ends.
type backoffListener struct {
	net.Listener
	log  *slog.Logger
	errs *atomic.Int64
	// episode is set from the first failed accept until one succeeds,
	// shared by the process's listeners: logged once at each end.
	episode *atomic.Bool
	sleep   func(time.Duration) // time.Sleep; tests observe it
}

func (l *backoffListener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if l.episode.CompareAndSwap(true, false) {
				l.log.Warn("accepting connections again", "failed_accepts", l.errs.Load())
			}
			return c, nil
		}
		if !outOfResources(err) {
			return nil, err
		}
		l.errs.Add(1)
		if pause == 0 {
			pause = acceptBackoffMin
		} else {
			pause = min(2*pause, acceptBackoffMax)
		}
		// One episode for the process, whichever listener meets it.
		if l.episode.CompareAndSwap(false, true) {
			l.log.Error("out of descriptors: accepting fewer connections, backing off", "err", err)
		}
		l.sleep(pause)
	}
}

// DefaultListenBacklog is Config.ListenBacklog's default.
const DefaultListenBacklog = 512

// setBacklog sets ln's accept queue to n connections (n ≤ 0: leaves the
// system's somaxconn, which Go asks for). Calling listen(2) again on a
// listening socket changes its backlog; where that is not offered the
// queue stays as it is.
func setBacklog(ln net.Listener, n int) {
	sc, ok := ln.(syscall.Conn)
	if !ok || n <= 0 {
		return
	}
	if raw, err := sc.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) { _ = syscall.Listen(int(fd), n) })
	}
}

// SyscallConn offers the wrapped listener's descriptor, for the
// connection cap's raw refusals (server.capListener).
func (l *backoffListener) SyscallConn() (syscall.RawConn, error) {
	sc, ok := l.Listener.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// outOfResources reports whether err is an accept failure for lack of
// descriptors or memory, which passes when connections close.
func outOfResources(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// serverConfig is the HTTP server's configuration: a.cfg's limits and
// timeouts, the connection cap derived from the descriptor limit, which
// it first sets (Config.MaxOpenFiles) and logs.
func (a *App) serverConfig() server.Config {
	cfg := a.cfg
	sc := server.DefaultConfig()
	sc.BodyLimit, sc.ChatBodyLimit = int(cfg.BodyLimit), int(cfg.ChatBodyLimit)
	sc.ReadTimeout, sc.WriteTimeout = cfg.ReadTimeout, cfg.WriteTimeout
	sc.IdleTimeout, sc.StreamTimeout = cfg.IdleTimeout, cfg.StreamTimeout
	sc.MaxConnsPerIP = int(cfg.MaxConnsPerIP)
	before, after, err := setNoFile(uint64(cfg.MaxOpenFiles))
	sc.MaxConns = int(cfg.MaxConns)
	if sc.MaxConns == 0 {
		sc.MaxConns = ConnCap(after.Cur)
	}
	if err != nil {
		a.log.Warn("descriptor limit unchanged", "err", err, "soft", before.Cur, "hard", before.Max)
	}
	a.log.Info("descriptor limit", "soft_at_start", before.Cur, "soft", after.Cur, "hard", after.Max,
		"max_conns", sc.MaxConns, "max_conns_per_ip", sc.MaxConnsPerIP)
	return sc
}

// watchConns publishes the open connections, the failed accepts and the
// connections refused over the cap.
func (a *App) watchConns(m *observe.Metrics) error {
	mt := m.MeterProvider().Meter("wingate/app")
	_, err1 := mt.Int64ObservableGauge("wingate.http.connections",
		metric.WithUnit("{connection}"), metric.WithDescription("Client connections open on the HTTP server."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(a.srv.App().Server().GetOpenConnectionsCount()))
			return nil
		}))
	_, err2 := mt.Int64ObservableCounter("wingate.http.accept.failures",
		metric.WithUnit("{accept}"), metric.WithDescription("Accepts that failed for lack of descriptors or memory; the server backs off and keeps serving."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(a.acceptFailures.Load())
			return nil
		}))
	_, err3 := mt.Int64ObservableCounter("wingate.http.connections.refused",
		metric.WithUnit("{connection}"), metric.WithDescription("Connections refused over the connection cap (answered 503 over_capacity and closed)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(a.srv.RefusedConns())
			return nil
		}))
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("app: connection metrics: %w", err)
	}
	return nil
}
