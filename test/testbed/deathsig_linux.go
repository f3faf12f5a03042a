//go:build linux

package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// childSysProcAttr puts a child in its own process group and has the kernel SIGKILL it when
// the thread that started it dies, which happens when the test binary is killed, panics or
// times out without reaching Env.Stop.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// wrapWithDeathSignal returns an executable script in dir that runs binary, with the same
// name and arguments, under `setpriv --pdeathsig KILL`. envtest starts etcd and
// kube-apiserver itself, with no way to set a parent-death signal; the script sets it
// before exec'ing the real binary, so they die with the test binary from their first
// instant. Without setpriv (util-linux) it returns binary unchanged, and only the watchdog
// guards them, once they are up.
func wrapWithDeathSignal(dir, binary string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return binary, nil
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", shellQuote(setpriv), shellQuote(binary))
	wrapper := filepath.Join(dir, filepath.Base(binary))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("write parent-death wrapper for %s: %w", binary, err)
	}
	return wrapper, nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
