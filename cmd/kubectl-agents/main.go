// Command kubectl-agents is a kubectl plugin for hyperpool sessions: open a session of a
// sandbox class, run commands in its sandbox, copy files in and out, end it, list sessions
// and the pools' footprint, and serve the sandbox to an agent as MCP tools.
//
// Install it by putting the binary on PATH; kubectl finds it as "kubectl agents". It takes
// kubectl's connection flags (--kubeconfig, --context, -n/--namespace, ...) and uses the
// caller's own identity, through the Go client in pkg/client.
package main

import (
	"fmt"
	"os"
)

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// run executes the command line and returns the process's exit code: a remote command's
// own for exec, else 0, or 1 with an error.
func run(args []string) (int, error) {
	o := newRootOptions(os.Stdin, os.Stdout, os.Stderr)
	cmd := newRootCommand(o)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return o.exitCode, err
}
