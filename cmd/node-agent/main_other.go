//go:build !windows

package main

import (
	"fmt"
	"io"
	"os"
)

// windowsOnly is what the agent says when started anywhere but Windows.
const windowsOnly = "hyperpool node-agent runs on Windows nodes only (it manages Hyper-V utility VMs through HCS); deploy it with the chart's nodeAgent.enabled"

// exitNotWindows is the exit code off Windows: a usage error, not a crash to restart into.
const exitNotWindows = 2

func main() { os.Exit(notWindows(os.Stderr)) }

func notWindows(w io.Writer) int {
	fmt.Fprintln(w, windowsOnly)
	return exitNotWindows
}
