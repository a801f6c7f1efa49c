package testkit

import "syscall"

// nodeProcAttr puts a test's redis-server in its own process group,
// killed with the test binary should that die without cleaning up.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
