package main

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/spf13/cobra"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

func newEndCommand(root *rootOptions) *cobra.Command {
	var exports []string
	cmd := &cobra.Command{
		Use:   "end SESSION [--export REMOTE_PATH:LOCAL_DIR]...",
		Short: "End a session, after taking files out of it",
		Long: `end deletes the session, which destroys its sandbox. Each --export is downloaded first,
in order, as cp does (REMOTE_PATH arrives as LOCAL_DIR/<its base name>, unpacked as
hostile input within --max-download-bytes and --max-download-entries). The session is
deleted even when an export fails; the failures are reported. A session already gone
counts as ended.`,
		Example: `  kubectl agents end $S
  kubectl agents end $S --export "C:\work\out:./results" --export "C:\logs:./results"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: root.completeSessionsFirst,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var specs []hpclient.ExportSpec
			for _, e := range exports {
				remote, local, ok := splitExport(e)
				if !ok {
					return usageError(cmd, fmt.Sprintf("--export %q: want REMOTE_PATH:LOCAL_DIR", e))
				}
				specs = append(specs, hpclient.ExportSpec{RemotePath: remote, LocalDir: local})
			}
			return root.end(ctx, args[0], specs)
		},
	}
	cmd.Flags().StringArrayVar(&exports, "export", nil, "REMOTE_PATH:LOCAL_DIR to download before the end (repeatable)")
	root.addDownloadFlags(cmd.Flags())
	return cmd
}

func (o *rootOptions) end(ctx context.Context, name string, exports []hpclient.ExportSpec) error {
	if len(exports) > 0 {
		s, err := o.attach(ctx, name)
		if err != nil {
			return fmt.Errorf("%w (nothing exported, the session is not ended)", err)
		}
		return s.Close(ctx, hpclient.CloseOptions{Export: exports})
	}
	// Without exports the session need not be Ready: a Queued one ends too.
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	kube, err := o.kube()
	if err != nil {
		return err
	}
	obj := &agentsv1alpha1.AgentSession{}
	obj.Namespace, obj.Name = ns, name
	if err := kube.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete session %s/%s: %w", ns, name, err)
	}
	return nil
}

// splitExport splits REMOTE_PATH:LOCAL_DIR at the last colon that is not a Windows
// drive's (C:\out:D:\results is C:\out and D:\results).
func splitExport(arg string) (remote, local string, ok bool) {
	for i := len(arg) - 1; i > 0; i-- {
		if arg[i] != ':' {
			continue
		}
		drive := i >= 1 && isLetter(arg[i-1]) && (i == 1 || arg[i-2] == ':')
		if drive {
			continue
		}
		remote, local = arg[:i], arg[i+1:]
		return remote, local, remote != "" && local != ""
	}
	return "", "", false
}

func isLetter(b byte) bool { return (b|0x20) >= 'a' && (b|0x20) <= 'z' }
