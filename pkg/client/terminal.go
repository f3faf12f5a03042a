package client

import (
	"context"
	"errors"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/remotecommand"
)

// TerminalSize is a terminal's width and height in characters.
type TerminalSize = remotecommand.TerminalSize

// TerminalCommand is one process to run in the sandbox on a terminal, as kubectl exec -t
// does: the terminal merges its stdout and stderr into Stdout.
type TerminalCommand struct {
	// Args, Stdin and WorkDir are as in Command.
	Args    []string
	Stdin   io.Reader
	WorkDir string
	// Stdout receives what the terminal shows.
	Stdout io.Writer
	// Sizes, if set, gives the terminal's size, then each change; it ends (returns nil)
	// when the command is done.
	Sizes func() *TerminalSize
}

type terminalSizes func() *TerminalSize

func (f terminalSizes) Next() *TerminalSize { return f() }

// RunTerminal runs the command on a terminal in the sandbox's main container and returns
// its exit code, as Run does. The local side (raw mode, the size) is the caller's.
func (s *Session) RunTerminal(ctx context.Context, cmd TerminalCommand) (int, error) {
	if len(cmd.Args) == 0 {
		return -1, errors.New("run: no command")
	}
	args := cmd.Args
	if cmd.WorkDir != "" {
		args = s.opts.WorkDirArgs(cmd.WorkDir, args)
	}
	s.heartbeat.begin()
	defer s.heartbeat.end()
	return s.exitCode(ctx, args, s.execTerminal(ctx, args, cmd))
}

func (s *Session) execTerminal(ctx context.Context, args []string, cmd TerminalCommand) error {
	stdout := cmd.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	opts := &corev1.PodExecOptions{Container: s.Container, Command: args,
		Stdin: cmd.Stdin != nil, Stdout: true, TTY: true}
	executor, err := s.executor(opts)
	if err != nil {
		return err
	}
	streams := remotecommand.StreamOptions{Stdin: cmd.Stdin, Stdout: stdout, Tty: true}
	if cmd.Sizes != nil {
		streams.TerminalSizeQueue = terminalSizes(cmd.Sizes)
	}
	return executor.StreamWithContext(ctx, streams)
}
