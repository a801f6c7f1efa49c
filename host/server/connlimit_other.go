//go:build !linux

package server

import (
	"net"
	"syscall"
)

// refuseRaw is Linux's fast refusal path (connlimit_linux.go); elsewhere
// every connection goes through Accept.
func (l *capListener) refuseRaw() bool { return false }

func rawListener(net.Listener) syscall.RawConn { return nil }
