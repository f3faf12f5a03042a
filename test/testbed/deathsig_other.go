//go:build !windows && !linux

package testbed

import "syscall"

// childSysProcAttr puts a child in its own process group. Only Linux has a parent-death
// signal, so elsewhere a test binary that dies without reaching Env.Stop can leave
// children behind.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// wrapWithDeathSignal returns binary unchanged: there is no parent-death signal to set.
func wrapWithDeathSignal(dir, binary string) (string, error) {
	return binary, nil
}
