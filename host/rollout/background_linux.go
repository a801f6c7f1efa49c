package rollout

import (
	"runtime"
	"syscall"
)

// backgroundNice is the OS priority (nice) of the thread that loads a
// version: activation work yields the CPU to request serving.
const backgroundNice = 10

// inBackground runs fn on an OS thread of its own at a lower priority and
// waits for it. The thread is discarded afterwards (the goroutine exits
// while locked to it), so the priority never leaks to other goroutines.
func inBackground(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), backgroundNice)
		fn()
	}()
	<-done
}
