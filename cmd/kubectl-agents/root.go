package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/version"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

// sandboxOSEnv sets the default of --sandbox-os.
const sandboxOSEnv = "KUBECTL_AGENTS_SANDBOX_OS"

// rootOptions are the flags and streams every command shares.
type rootOptions struct {
	genericiooptions.IOStreams
	config *genericclioptions.ConfigFlags
	// sandboxOS is windows (tar.exe, PowerShell for a working directory) or linux (tar,
	// env --chdir): Linux sandboxes and the test bed.
	sandboxOS string
	// exitCode is what the process exits with when the command returns no error: exec
	// sets the remote command's.
	exitCode int
	// maxDownloadBytes and maxDownloadEntries cap what a download unpacks (cp, mcp).
	maxDownloadBytes   int64
	maxDownloadEntries int
}

func newRootOptions(in io.Reader, out, errOut io.Writer) *rootOptions {
	return &rootOptions{
		IOStreams: genericiooptions.IOStreams{In: in, Out: out, ErrOut: errOut},
		config:    genericclioptions.NewConfigFlags(true),
	}
}

func newRootCommand(o *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubectl-agents",
		Short: "Use hyperpool sessions: Windows sandboxes for agents",
		Long: `kubectl agents opens hyperpool sessions (AgentSession objects) and uses their sandboxes:
commands and files go through pods/exec with your own identity, as kubectl exec and
kubectl cp do. Nothing runs in the sandbox but the commands themselves.`,
		Example: `  # Open a session of the sandbox class win2022 in namespace agents; prints its name
  S=$(kubectl agents open win2022 -n agents)

  # Run a command, copy a tree in and results out, end the session
  kubectl agents exec $S -n agents -- cmd.exe /c ver
  kubectl agents cp ./repo "$S:C:\work" -n agents
  kubectl agents cp "$S:C:\work\out" ./results -n agents
  kubectl agents end $S -n agents

  # Serve a sandbox to an agent as MCP tools over stdio
  kubectl agents mcp --sandbox win2022 -n agents`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl agents"},
		// Setting Version gives the command cobra's --version flag.
		Version: version.Version,
	}
	cmd.SetVersionTemplate(version.String("kubectl-agents") + "\n")
	cmd.SetIn(o.In)
	cmd.SetOut(o.Out)
	cmd.SetErr(o.ErrOut)
	flags := cmd.PersistentFlags()
	o.config.AddFlags(flags)
	def := os.Getenv(sandboxOSEnv)
	if def == "" {
		def = "windows"
	}
	flags.StringVar(&o.sandboxOS, "sandbox-os", def,
		"the sandbox's OS: windows (tar.exe, PowerShell) or linux (tar, env --chdir; the test bed). Default from $"+sandboxOSEnv)
	_ = cmd.RegisterFlagCompletionFunc("sandbox-os", cobra.FixedCompletions([]string{"windows", "linux"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("namespace", o.completeNamespaces)

	cmd.AddCommand(newOpenCommand(o), newExecCommand(o), newCpCommand(o), newEndCommand(o),
		newLsCommand(o), newTopCommand(o), newMCPCommand(o), newDoctorCommand(o))
	return cmd
}

// namespace is the namespace of -n, else the kubeconfig context's, else default.
func (o *rootOptions) namespace() (string, error) {
	ns, _, err := o.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("namespace: %w", err)
	}
	return ns, nil
}

// client is the Go client of pkg/client for the kubeconfig's identity.
func (o *rootOptions) client() (*hpclient.Client, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return hpclient.New(cfg)
}

// kube is a plain client for reading sessions and classes.
func (o *rootOptions) kube() (crclient.Client, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := agentsv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return crclient.New(cfg, crclient.Options{Scheme: scheme})
}

// addDownloadFlags adds the caps of what a download from the sandbox unpacks.
func (o *rootOptions) addDownloadFlags(f *pflag.FlagSet) {
	f.Int64Var(&o.maxDownloadBytes, "max-download-bytes", hpclient.DefaultMaxDownloadBytes,
		"bytes one download from the sandbox may unpack, at most (the sandbox is untrusted)")
	f.IntVar(&o.maxDownloadEntries, "max-download-entries", hpclient.DefaultMaxDownloadEntries,
		"files and directories one download from the sandbox may unpack, at most")
}

// sessionOptions are the client options for the sandbox's OS and the download caps.
func (o *rootOptions) sessionOptions(opts hpclient.Options) (hpclient.Options, error) {
	opts.MaxDownloadBytes, opts.MaxDownloadEntries = o.maxDownloadBytes, o.maxDownloadEntries
	switch strings.ToLower(o.sandboxOS) {
	case "windows", "":
	case "linux":
		opts.Tar = "tar"
		opts.WorkDirArgs = hpclient.LinuxWorkDirArgs
	default:
		return opts, fmt.Errorf("--sandbox-os %q: want windows or linux", o.sandboxOS)
	}
	return opts, nil
}

// attach returns a Session for a Ready session, to use without ending it.
func (o *rootOptions) attach(ctx context.Context, name string) (*hpclient.Session, error) {
	ns, err := o.namespace()
	if err != nil {
		return nil, err
	}
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	opts, err := o.sessionOptions(hpclient.Options{})
	if err != nil {
		return nil, err
	}
	return c.Attach(ctx, ns, name, opts)
}

// touch marks the session active now. The client's heartbeat patches asynchronously and
// a short-lived command may exit before it lands: this one is synchronous.
func (o *rootOptions) touch(ctx context.Context, s *hpclient.Session) {
	kube, err := o.kube()
	if err != nil {
		return
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`,
		agentsv1alpha1.LastActivityAnnotation, time.Now().UTC().Format(time.RFC3339Nano))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	obj := &agentsv1alpha1.AgentSession{}
	obj.Namespace, obj.Name = s.Namespace, s.Name
	_ = kube.Patch(ctx, obj, crclient.RawPatch(types.MergePatchType, []byte(patch)))
}
