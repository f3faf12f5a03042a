//go:build !windows

package testbed

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// watchdogScript waits for its standard input to reach end-of-file, which happens when
// the test binary exits by any means (the write end of the pipe lives only in the test
// binary). It then kills the process groups in $TESTBED_PGIDS ("-PGID ...") and removes the
// directories named by its arguments (etcd's data is over 100 MB), keeping the logs.
const watchdogScript = `read -r line
kill -s KILL -- $TESTBED_PGIDS 2>/dev/null
rm -rf -- "$@"
echo "testbed: the test binary died without stopping its test bed: killed etcd and kube-apiserver, logs are in $TESTBED_LOGS" >&2
exit 0`

// watchdog guards processes that the test bed did not start itself and so could not give a
// parent-death signal: envtest's etcd and kube-apiserver. controller-runtime starts them
// with Setpgid only, so a test binary killed with SIGKILL, or one that panics, would
// otherwise leave them running.
type watchdog struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// startWatchdog starts a watchdog for the given process groups, which also removes
// disposableDirs; logDir is only named in its message. It returns nil, nil when there is
// nothing to guard.
func startWatchdog(pgids []int, disposableDirs []string, logDir string) (*watchdog, error) {
	if len(pgids) == 0 {
		return nil, nil
	}
	groups := make([]string, len(pgids))
	for i, pgid := range pgids {
		groups[i] = "-" + strconv.Itoa(pgid)
	}
	args := append([]string{"-c", watchdogScript, "testbed-watchdog"}, disposableDirs...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = append(os.Environ(), "TESTBED_PGIDS="+strings.Join(groups, " "), "TESTBED_LOGS="+logDir)
	// Its message goes where the test binary's own output went.
	cmd.Stderr = os.Stderr
	// Its own process group keeps a terminal Ctrl-C from killing the watchdog before it can
	// act; it deliberately has no parent-death signal, since it must outlive the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("watchdog stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start watchdog (/bin/sh) for process groups %v: %w", pgids, err)
	}
	w := &watchdog{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// disarm kills the watchdog without letting it act. Env.Stop calls it before stopping
// etcd and kube-apiserver itself, so the watchdog can never signal a recycled PID.
func (w *watchdog) disarm() error {
	if w == nil {
		return nil
	}
	err := w.cmd.Process.Kill()
	<-w.done
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill watchdog (pid %d): %w", w.cmd.Process.Pid, err)
	}
	return nil
}
