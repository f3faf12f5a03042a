//go:build linux

package testbed_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// TestKilledTestBinaryLeavesNoProcesses starts a test bed in a child copy of this test
// binary, kills that child with SIGKILL, and checks that every component dies with it
// (through its parent-death signal and the watchdog) and that etcd's data is removed.
func TestKilledTestBinaryLeavesNoProcesses(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a third control plane")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	// Should this test die first, the helper goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("helper stdout: %v", err)
	}
	// The parent-death signal follows the thread that forks. Locking keeps this goroutine
	// on one thread for the fork; nothing in this binary retires threads while the helper
	// lives, which the test bed itself cannot assume (see forkThread).
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	report, err := readHelperReport(stdout)
	if err != nil {
		t.Fatalf("helper did not report its test bed: %v", err)
	}
	// The watchdog keeps the logs for a post-mortem; this test needs none.
	t.Cleanup(func() { _ = os.RemoveAll(report.Dir) })
	pids := report.PIDs
	assertAllComponents(t, pids)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill helper (pid %d): %v", cmd.Process.Pid, err)
	}
	_ = cmd.Wait()

	err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, waitTimeout, true,
		func(context.Context) (bool, error) {
			for _, pid := range pids {
				if processAlive(pid) {
					return false, nil
				}
			}
			return true, nil
		})
	if err != nil {
		for name, pid := range pids {
			if processAlive(pid) {
				t.Errorf("%s (pid %d) survived the SIGKILL of the test binary", name, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// The watchdog removes etcd's data after killing etcd, just before it exits.
	etcdData := filepath.Join(report.Dir, "etcd")
	err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, waitTimeout, true,
		func(context.Context) (bool, error) {
			_, err := os.Stat(etcdData)
			return errors.Is(err, os.ErrNotExist), nil
		})
	if err != nil {
		t.Errorf("etcd data %s still exists after the test binary died", etcdData)
	}
}

// readHelperReport reads the helper's report line from its stdout.
func readHelperReport(stdout io.Reader) (helperReport, error) {
	type result struct {
		report helperReport
		err    error
	}
	done := make(chan result, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if line, ok := strings.CutPrefix(scanner.Text(), reportMarker); ok {
				var r result
				r.err = json.Unmarshal([]byte(line), &r.report)
				done <- r
				return
			}
		}
		done <- result{err: fmt.Errorf("helper's stdout ended without a report (scan error: %w)", scanner.Err())}
	}()
	select {
	case r := <-done:
		return r.report, r.err
	case <-time.After(waitTimeout):
		return helperReport{}, fmt.Errorf("no report within %s", waitTimeout)
	}
}

// isZombie reports whether the process has exited but not been reaped yet.
func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist) // gone meanwhile
	}
	// The state follows the command name, which is in parentheses and may contain spaces.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}
