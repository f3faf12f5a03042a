//go:build linux

package testbed

import "syscall"

// childSysProcAttr puts a child in its own process group and has the kernel SIGKILL it when
// the thread that started it dies, which happens when the test binary is killed, panics or
// times out without reaching Env.Stop.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
