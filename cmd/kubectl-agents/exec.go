package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

type execOptions struct {
	*rootOptions
	stdin   bool
	tty     bool
	workDir string
	timeout time.Duration
}

func newExecCommand(root *rootOptions) *cobra.Command {
	o := &execOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "exec SESSION [-i] [-w DIR] -- COMMAND [ARG...]",
		Short: "Run a command in a session's sandbox",
		Long: `exec runs COMMAND in the main container of the session's sandbox, through pods/exec, and
exits with its exit code. The arguments reach the program as they are, never joined into a
shell string: use cmd.exe /c or powershell.exe -Command for shell features.

With -i, stdin is copied to the command. With -t, the command runs on a terminal in the
sandbox (its stderr then comes through stdout, as on any terminal); when stdin is a
terminal too, it is put in raw mode and its size follows the local window, as
kubectl exec -it does.`,
		Example: `  kubectl agents exec $S -- cmd.exe /c ver
  kubectl agents exec $S -w "C:\work" -- powershell.exe -Command "Get-ChildItem"
  type script.ps1 | kubectl agents exec $S -i -- powershell.exe -Command -
  kubectl agents exec $S -it -- cmd.exe`,
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: root.completeSessionsFirst,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageError(cmd, "want SESSION -- COMMAND [ARG...]")
			}
			return o.run(cmd.Context(), args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.stdin, "stdin", "i", false, "pass stdin to the command")
	f.BoolVarP(&o.tty, "tty", "t", false, "run the command on a terminal")
	f.StringVarP(&o.workDir, "workdir", "w", "", "directory to run the command in")
	f.DurationVar(&o.timeout, "timeout", 0, "end the command after this long (0: no limit)")
	return cmd
}

func (o *execOptions) run(ctx context.Context, session string, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	s, err := o.attach(ctx, session)
	if err != nil {
		return err
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	if o.tty {
		code, err := o.runTerminal(ctx, s, args)
		o.touch(ctx, s)
		o.exitCode = code
		return err
	}
	c := hpclient.Command{Args: args, Stdout: o.Out, Stderr: o.ErrOut, WorkDir: o.workDir}
	if o.stdin {
		c.Stdin = o.In
	}
	code, err := s.Run(ctx, c)
	o.touch(ctx, s)
	if err != nil {
		return err
	}
	o.exitCode = code
	return nil
}

// runTerminal runs args on a terminal; a local terminal on stdin is put in raw mode for
// the command's time, and its size is sent when it changes.
func (o *execOptions) runTerminal(ctx context.Context, s *hpclient.Session, args []string) (int, error) {
	c := hpclient.TerminalCommand{Args: args, Stdout: o.Out, WorkDir: o.workDir}
	if o.stdin {
		c.Stdin = o.In
	}
	if f, ok := o.In.(*os.File); ok && o.stdin && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		state, err := term.MakeRaw(fd)
		if err != nil {
			return -1, fmt.Errorf("raw mode: %w", err)
		}
		defer func() { _ = term.Restore(fd, state) }()
		done := make(chan struct{})
		defer close(done)
		c.Sizes = sizes(fd, done)
	}
	return s.RunTerminal(ctx, c)
}

// sizes yields the terminal's size, then each change (polled: SIGWINCH does not exist on
// Windows), until done.
func sizes(fd int, done <-chan struct{}) func() *hpclient.TerminalSize {
	var last hpclient.TerminalSize
	return func() *hpclient.TerminalSize {
		for {
			if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
				size := hpclient.TerminalSize{Width: uint16(w), Height: uint16(h)}
				if size != last {
					last = size
					return &size
				}
			}
			select {
			case <-done:
				return nil
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}
