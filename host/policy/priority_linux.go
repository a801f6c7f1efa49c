package policy

import "syscall"

// compileNice is the nice value of a background compilation's thread:
// about a tenth of the share of CPU a thread of nice 0 gets when both
// want it, so that requests come first and the compilation still ends
// on a busy machine.
const compileNice = 10

// lowerThreadPriority lowers the scheduling priority of the calling
// thread alone (Linux applies setpriority to one thread when given its
// id). The caller has locked its goroutine to the thread. Failing is
// harmless: the compilation then competes as an ordinary thread.
func lowerThreadPriority() {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), compileNice)
}
