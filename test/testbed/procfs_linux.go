//go:build linux

package testbed

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// findChildren returns the PIDs of this process's direct children whose executable has one
// of the given base names and whose command line mentions marker (the test bed's own temp
// dir, which keeps two test beds in one process apart). It reads /proc because envtest
// does not expose the PIDs of the etcd and kube-apiserver it starts.
func findChildren(marker string, names ...string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue // not a process directory
		}
		if ppid, ok := parentPID(pid); !ok || ppid != self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", entry.Name(), "cmdline"))
		if err != nil {
			continue // exited meanwhile
		}
		argv := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		if slices.Contains(names, filepath.Base(argv[0])) && strings.Contains(string(raw), marker) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// parentPID reads the parent PID from /proc/PID/stat. The command name in that file is in
// parentheses and may itself contain spaces or parentheses, so fields are counted from the
// last ')'.
func parentPID(pid int) (int, bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[end+1:])) // state, ppid, ...
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}
