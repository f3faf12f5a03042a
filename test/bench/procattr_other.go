//go:build !linux && !windows

package bench

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
