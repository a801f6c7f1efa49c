package server

import (
	"net"
	"syscall"
)

// refuseRaw refuses, while the cap is full, the connections waiting in
// the listener's accept queue with three system calls each (accept4,
// write, close) on the raw descriptor, with no poller registration,
// socket options or allocation: under a flood this is what keeps the
// accept queue, and so every excess connection's wait, short (Go's
// Accept spends some ten system calls and a netFD on a connection that
// is closed at once). It returns once the queue is empty, the cap has
// room again or accept4 fails otherwise; the caller's Accept then waits
// for the next connection (and meets, and reports, any error itself).
// It reports whether the listener offered its descriptor.
func (l *capListener) refuseRaw() bool {
	if l.raw == nil {
		return false
	}
	// The listening descriptor is non-blocking (Go's poller owns it):
	// accept4 returns EAGAIN once the queue is empty.
	err := l.raw.Control(func(fd uintptr) {
		// Control holds the descriptor open until it returns: under a
		// flood that never lets the queue empty, the loop also ends
		// when the listener is closed.
		for l.open.Load() >= l.cap && !l.stopped() {
			nfd, _, err := syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			if err == syscall.EINTR || err == syscall.ECONNABORTED {
				continue
			}
			if err != nil {
				return // EAGAIN: empty; out of descriptors and the like: Accept reports it
			}
			_, _ = syscall.Write(nfd, refusalResponse)
			_ = syscall.Close(nfd)
			l.rawRefused.Add(1)
			if l.refused != nil {
				l.refused.Add(1)
			}
		}
	})
	return err == nil
}

// rawListener returns ln's descriptor (through wrappers that offer
// SyscallConn), or nil.
func rawListener(ln net.Listener) syscall.RawConn {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
