package main

import (
	"context"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

type execOptions struct {
	*rootOptions
	stdin   bool
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

With -i, stdin is copied to the command. There is no -t: no terminal is allocated (the
Go client runs commands without a TTY); use kubectl exec -it on the session's pod
(status.podName) for an interactive console.`,
		Example: `  kubectl agents exec $S -- cmd.exe /c ver
  kubectl agents exec $S -w "C:\work" -- powershell.exe -Command "Get-ChildItem"
  type script.ps1 | kubectl agents exec $S -i -- powershell.exe -Command -`,
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
	f.StringVarP(&o.workDir, "workdir", "w", "", "directory to run the command in")
	f.DurationVar(&o.timeout, "timeout", 0, "end the command after this long (0: no limit)")
	return cmd
}

func (o *execOptions) run(ctx context.Context, session string, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	s, err := o.attach(ctx, session)
	if err != nil {
		return err
	}
	c := hpclient.Command{Args: args, Stdout: o.Out, Stderr: o.ErrOut, WorkDir: o.workDir, Timeout: o.timeout}
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
