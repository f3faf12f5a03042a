//go:build !windows

package testbed

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// watchdogScript reads process group IDs, one a line, until its standard input reaches
// end-of-file. That happens when the test binary exits by any means, since the write end
// of the pipe lives only in the test binary. It then kills those process groups and
// removes the directories named by its arguments (etcd's data alone is over 100 MB),
// keeping the logs.
const watchdogScript = `groups=
while read -r pgid; do groups="$groups -$pgid"; done
if [ -n "$groups" ]; then kill -s KILL -- $groups 2>/dev/null; fi
rm -rf -- "$@"
echo "testbed: the test binary exited without Env.Stop; its etcd and kube-apiserver are killed and their data removed; logs are in $TESTBED_LOGS" >&2
exit 0`

// watchdog cleans up after a test binary that dies without calling Env.Stop: it kills
// envtest's etcd and kube-apiserver, which controller-runtime starts with no parent-death
// signal (see wrapWithDeathSignal for the other guard), and removes their data.
type watchdog struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// startWatchdog starts a watchdog that will remove disposableDirs; logDir is only named in
// its message. Tell it the processes to kill with guard.
func startWatchdog(disposableDirs []string, logDir string) (*watchdog, error) {
	args := append([]string{"-c", watchdogScript, "testbed-watchdog"}, disposableDirs...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = append(os.Environ(), "TESTBED_LOGS="+logDir)
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
		return nil, fmt.Errorf("start watchdog (/bin/sh): %w", err)
	}
	w := &watchdog{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// guard adds process groups for the watchdog to kill.
func (w *watchdog) guard(pgids ...int) error {
	for _, pgid := range pgids {
		if _, err := fmt.Fprintf(w.stdin, "%d\n", pgid); err != nil {
			return fmt.Errorf("tell watchdog (pid %d) to guard process group %d: %w", w.cmd.Process.Pid, pgid, err)
		}
	}
	return nil
}

// disarm kills the watchdog without letting it act. Env.Stop calls it before stopping
// etcd and kube-apiserver itself, so the watchdog can never signal a recycled PID.
func (w *watchdog) disarm() error {
	if w == nil {
		return nil
	}
	err := w.cmd.Process.Kill()
	<-w.done
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill watchdog (pid %d): %w", w.cmd.Process.Pid, err)
	}
	return nil
}
