//go:build !unix

package policy

// openNoBlock: no such flags here; the lstat and fstat checks remain.
const openNoBlock = 0
