//go:build darwin || freebsd

package policy

const mapNoReserve = 0
