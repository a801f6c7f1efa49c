//go:build unix

package policy

import "syscall"

// openNoBlock opens a policy directory's file without blocking (a FIFO
// swapped in after the lstat) and without following a final symlink.
const openNoBlock = syscall.O_NONBLOCK | syscall.O_NOFOLLOW
