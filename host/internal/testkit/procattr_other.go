//go:build !linux

package testkit

import "syscall"

// nodeProcAttr puts a test's redis-server in its own process group
// (only Linux kills it with the test binary).
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
