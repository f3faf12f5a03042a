package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"
)

func newCpCommand(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cp SESSION:REMOTE_PATH LOCAL_DIR | LOCAL_PATH SESSION:REMOTE_DIR",
		Short: "Copy files and trees into and out of a session's sandbox",
		Long: `cp copies a file or a directory tree between this machine and a session's sandbox, as a
tar stream over pods/exec (the sandbox needs tar.exe: Windows Server 2019 and later
ship it). Either way, the source arrives inside the destination directory under its own
base name:

  cp SESSION:REMOTE_PATH LOCAL_DIR    gives LOCAL_DIR/<base name of REMOTE_PATH>
  cp LOCAL_PATH SESSION:REMOTE_DIR    gives REMOTE_DIR/<base name of LOCAL_PATH>

REMOTE_DIR must exist; an empty one (SESSION:) is the commands' working directory.

What comes out of the sandbox is treated as hostile: only entries under the base name of
REMOTE_PATH are unpacked, through LOCAL_DIR and never through a symbolic link that
already exists there; links, devices, fifos and sparse files are refused; and a download
stops at --max-download-bytes or --max-download-entries, leaving no partly written file.`,
		Example: `  kubectl agents cp ./repo "$S:C:\work"
  kubectl agents cp "$S:C:\work\repo\out" ./results`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: root.completeCp,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
			defer stop()
			src, dst := args[0], args[1]
			srcSession, srcPath, srcRemote := splitRemote(src)
			dstSession, dstPath, dstRemote := splitRemote(dst)
			switch {
			case srcRemote && !dstRemote:
				s, err := root.attach(ctx, srcSession)
				if err != nil {
					return err
				}
				err = s.Download(ctx, srcPath, dst)
				root.touch(ctx, s)
				return err
			case !srcRemote && dstRemote:
				if _, err := os.Lstat(src); err != nil {
					return err
				}
				s, err := root.attach(ctx, dstSession)
				if err != nil {
					return err
				}
				err = s.Upload(ctx, src, dstPath)
				root.touch(ctx, s)
				return err
			default:
				return usageError(cmd, "exactly one of the two paths must be SESSION:PATH")
			}
		},
	}
	root.addDownloadFlags(cmd.Flags())
	return cmd
}

// splitRemote splits SESSION:PATH. A one-letter prefix is a Windows drive (C:\x), a
// local path; so is anything with a path separator before the colon.
func splitRemote(arg string) (session, path string, remote bool) {
	i := strings.IndexByte(arg, ':')
	if i <= 0 {
		return "", arg, false
	}
	if i == 1 || strings.ContainsAny(arg[:i], `/\`) {
		return "", arg, false
	}
	return arg[:i], arg[i+1:], true
}

func usageError(cmd *cobra.Command, msg string) error {
	return fmt.Errorf("%s\nSee '%s -h' for help and examples", msg, cmd.CommandPath())
}
