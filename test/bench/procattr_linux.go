//go:build linux

package bench

import "syscall"

// sysProcAttr kills the manager when the benchmark dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
