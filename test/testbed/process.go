//go:build !windows

package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// childStopTimeout is how long a child gets to exit after SIGTERM before it is killed.
const childStopTimeout = 10 * time.Second

// logTailBytes is how much of a component's log an error message quotes.
const logTailBytes = 4096

// child is one process the test bed started itself (scheduler, controller-manager, kwok).
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	// done is closed once the process has exited and been reaped; waitErr is valid then.
	done    chan struct{}
	waitErr error
}

// startChild starts binary with args on thread, its stdout and stderr appended to logPath.
//
// The child gets its own process group, so a Ctrl-C on the terminal reaches only the test
// binary, which then stops the children in order; and the kernel kills it when the test
// binary dies (see forkThread), so a killed or crashed test binary leaves nothing behind.
func startChild(thread *forkThread, name, binary string, args []string, logPath string) (*child, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	// The child holds its own copy of the descriptor once started.
	defer logFile.Close()

	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childSysProcAttr()

	thread.run(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, binary, err)
	}

	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid is the child's process id (and, since it leads its own group, its process group id).
func (c *child) pid() int { return c.cmd.Process.Pid }

// exitError reports, without blocking, whether the child has already exited, quoting the
// end of its log. A nil result means it is still running.
func (c *child) exitError() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s (pid %d) exited: %w%s", c.name, c.pid(), c.waitErr, logTailSection(c.logPath))
	default:
		return nil
	}
}

// stop asks the child's process group to terminate, waits up to childStopTimeout, then
// kills it. It is safe to call on a child that has already exited.
func (c *child) stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	// Signal the group, not just the leader, in case the component forked helpers.
	if err := syscall.Kill(-c.pid(), syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send SIGTERM to %s (pid %d): %w", c.name, c.pid(), err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(childStopTimeout):
	}
	if err := syscall.Kill(-c.pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send SIGKILL to %s (pid %d): %w", c.name, c.pid(), err)
	}
	<-c.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", c.name, c.pid(), childStopTimeout)
}

// tailFile returns up to the last n bytes of the file at path, starting at a line boundary
// when it can, or a note saying why it could not be read.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat log: %v)", err)
	}
	offset := max(info.Size()-n, 0)
	data, err := io.ReadAll(io.NewSectionReader(f, offset, info.Size()-offset))
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if offset > 0 {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	if len(data) == 0 {
		return "(log is empty)"
	}
	return string(data)
}

// forkThread is one OS thread, locked to its own goroutine for the test bed's lifetime, on
// which every component is forked. The kernel's parent-death signal (see childSysProcAttr)
// fires when the thread that forked a child exits, not the process. Go ends a thread only
// when a goroutine exits while locked to it; forking on a thread no other goroutine can
// lock means the signal fires exactly when the test binary dies, or when release lets the
// thread go after the children are stopped.
type forkThread struct {
	calls chan func()
}

func newForkThread() *forkThread {
	t := &forkThread{calls: make(chan func())}
	go func() {
		// Never unlocked: the goroutine exits locked once released, ending the thread.
		runtime.LockOSThread()
		for call := range t.calls {
			call()
		}
	}()
	return t
}

// run calls f on the thread and waits for it to return.
func (t *forkThread) run(f func()) {
	done := make(chan struct{})
	t.calls <- func() {
		defer close(done)
		f()
	}
	<-done
}

// release ends the thread; call it only once everything forked on it has stopped.
func (t *forkThread) release() {
	if t != nil {
		close(t.calls)
	}
}
