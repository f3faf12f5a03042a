package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/capbuf"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
)

// defaultMaxOutput bounds what one tool call returns of a command's output or a file.
const defaultMaxOutput = 64 << 10

// defaultToolTimeout bounds one tool call, the opening of a session included: long
// enough for a cold start and a long build, short enough that a hung sandbox (or a
// command that never ends) does not hold the agent forever.
const defaultToolTimeout = 10 * time.Minute

type mcpOptions struct {
	sandbox     string
	user        string
	maxLifetime time.Duration
	idleTimeout time.Duration
	requireWarm bool
	maxOutput   int
	credentials credentialFlags
	workspace   string
	toolTimeout time.Duration
}

func newMCPCommand(root *rootOptions) *cobra.Command {
	o := &mcpOptions{}
	cmd := &cobra.Command{
		Use:   "mcp --sandbox CLASS",
		Short: "Serve a sandbox to an agent as MCP tools, over stdio",
		Long: `mcp is a Model Context Protocol server on stdin and stdout. Its tools run commands and
move files in a session of the sandbox class CLASS: run_command, write_file, read_file,
list_dir, upload, download and end_session.

The session is opened lazily, at the first tool call that needs one: no tool call, no
sandbox. It ends on end_session (a later call opens a new one), or when the client
disconnects (stdin closes) or the server is interrupted. A command's output and a read
file are cut at --max-output bytes, and the cut is marked. Errors come back as tool
errors carrying the session's reason (e.g. ExceedsQuota, IdleTimeout).

The model names local paths (upload's local_path, download's and end_session's
local_dir), and the model reads what the sandbox prints: those paths are confined to
--workspace (default: the working directory). Absolute paths outside it, ".." and
symbolic links that lead out are refused; when the client declares MCP roots, a path
must lie inside one of them as well. What a download unpacks is capped
(--max-download-bytes, --max-download-entries), and every tool call ends after
--tool-timeout.`,
		Example: `  # In an MCP client's configuration (e.g. Claude Desktop, VS Code):
  #   "command": "kubectl", "args": ["agents", "mcp", "--sandbox", "win2022", "-n", "agents"]
  kubectl agents mcp --sandbox win2022 -n agents --idle-timeout 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.sandbox == "" {
				return usageError(cmd, "--sandbox CLASS is required")
			}
			ctx := cmd.Context()
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, sb, err := newMCPServer(root, o)
			if err != nil {
				return err
			}
			defer func() { _ = sb.ws.close() }()
			err = srv.Run(ctx, &mcp.StdioTransport{})
			if cerr := sb.close(); cerr != nil {
				fmt.Fprintln(root.ErrOut, "end session:", cerr)
			}
			if err != nil && (ctx.Err() != nil || errors.Is(err, context.Canceled)) {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.sandbox, "sandbox", "", "the sandbox class to open sessions of (required)")
	f.StringVar(&o.user, "user", "mcp", "free text for the audit trail (spec.user)")
	f.DurationVar(&o.maxLifetime, "max-lifetime", 0, "the session's max lifetime (default: the class's)")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 0, "the session's idle timeout (default: the class's)")
	f.BoolVar(&o.requireWarm, "require-warm", false, "wait for a warm sandbox rather than start a cold one")
	o.credentials.addFlags(f)
	f.IntVar(&o.maxOutput, "max-output", defaultMaxOutput, "bytes of output or file content one tool call returns, at most")
	f.StringVar(&o.workspace, "workspace", ".", "the local directory the tools' local paths are confined to")
	f.DurationVar(&o.toolTimeout, "tool-timeout", defaultToolTimeout, "end a tool call (the opening of its session included) after this long")
	root.addDownloadFlags(f)
	_ = cmd.RegisterFlagCompletionFunc("sandbox", func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return root.sandboxNames(toComplete), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// mcpSandbox holds the MCP server's session, opened at the first call that needs it.
type mcpSandbox struct {
	root *rootOptions
	o    *mcpOptions
	ws   *workspace

	mu      sync.Mutex
	session *hpclient.Session
}

// newMCPServer builds the server and its sandbox; close the sandbox when the server stops.
func newMCPServer(root *rootOptions, o *mcpOptions) (*mcp.Server, *mcpSandbox, error) {
	if o.maxOutput <= 0 {
		o.maxOutput = defaultMaxOutput
	}
	if _, err := root.sessionOptions(hpclient.Options{}); err != nil {
		return nil, nil, err
	}
	if err := o.credentials.apply(&hpclient.Options{}); err != nil {
		return nil, nil, err // a bad --credential fails at start, not at the first tool call
	}
	if o.toolTimeout <= 0 {
		o.toolTimeout = defaultToolTimeout
	}
	ws, err := openWorkspace(o.workspace)
	if err != nil {
		return nil, nil, err
	}
	sb := &mcpSandbox{root: root, o: o, ws: ws}
	srv := mcp.NewServer(&mcp.Implementation{Name: "hyperpool", Title: "hyperpool sandbox", Version: "v1alpha1"},
		&mcp.ServerOptions{Instructions: fmt.Sprintf(
			"Tools to run commands and move files in a %s sandbox of class %q. A sandbox session is "+
				"created at the first tool call that needs one and ended by end_session or when you disconnect.",
			root.sandboxOS, o.sandbox)})
	t := &o.toolTimeout
	mcp.AddTool(srv, &mcp.Tool{Name: "run_command", Description: "Run a program in the sandbox and return its exit code, stdout and stderr. " +
		"args are passed as they are, not through a shell: use [\"cmd.exe\",\"/c\",...] or [\"powershell.exe\",\"-Command\",...] for shell features."}, timed(t, sb.runCommand))
	mcp.AddTool(srv, &mcp.Tool{Name: "write_file", Description: "Write a text file in the sandbox (its directory must exist)."}, timed(t, sb.writeFile))
	mcp.AddTool(srv, &mcp.Tool{Name: "read_file", Description: "Read a file of the sandbox (text, or base64 if it is not UTF-8)."}, timed(t, sb.readFile))
	mcp.AddTool(srv, &mcp.Tool{Name: "list_dir", Description: "List a directory of the sandbox."}, timed(t, sb.listDir))
	mcp.AddTool(srv, &mcp.Tool{Name: "upload", Description: "Copy a local file or directory tree, inside the workspace " + ws.dir +
		", into a directory of the sandbox: it arrives as remote_dir/<its base name>."}, timed(t, sb.upload))
	mcp.AddTool(srv, &mcp.Tool{Name: "download", Description: "Copy a file or directory tree of the sandbox to a local directory inside the workspace " + ws.dir +
		": it arrives as local_dir/<its base name>."}, timed(t, sb.download))
	mcp.AddTool(srv, &mcp.Tool{Name: "end_session", Description: "End the sandbox session, after downloading the exports (into local directories inside the workspace " +
		ws.dir + "); a later tool call opens a new session."}, timed(t, sb.endSession))
	return srv, sb, nil
}

// get returns the session, opening it on first use. While it opens, req's caller gets
// progress notifications if it asked for them (a progress token), and stderr a line per
// step.
func (sb *mcpSandbox) get(ctx context.Context, req *mcp.CallToolRequest) (*hpclient.Session, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.session != nil {
		return sb.session, nil
	}
	ns, err := sb.root.namespace()
	if err != nil {
		return nil, err
	}
	c, err := sb.root.client()
	if err != nil {
		return nil, err
	}
	step := 0
	// Open never outlives the call that opens it, and the session's startTimeout says so.
	opts := hpclient.Options{User: sb.o.user, MaxLifetime: sb.o.maxLifetime, IdleTimeout: sb.o.idleTimeout,
		StartTimeout: sb.o.toolTimeout,
		Progress: func(p hpclient.Progress) {
			line := describeProgress(p, p.Elapsed)
			fmt.Fprintln(sb.root.ErrOut, line)
			if req == nil || req.Session == nil || req.Params == nil || req.Params.GetProgressToken() == nil {
				return
			}
			step++
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: req.Params.GetProgressToken(), Message: line, Progress: float64(step)})
		}}
	if sb.o.requireWarm {
		opts.StartPolicy = agentsv1alpha1.RequireWarm
	}
	if opts, err = sb.root.sessionOptions(opts); err != nil {
		return nil, err
	}
	if err := sb.o.credentials.apply(&opts); err != nil {
		return nil, err
	}
	s, err := c.Open(ctx, ns, sb.o.sandbox, opts)
	if err != nil {
		return nil, fmt.Errorf("open a session of %s/%s: %w", ns, sb.o.sandbox, err)
	}
	fmt.Fprintf(sb.root.ErrOut, "opened session %s/%s (%s)\n", s.Namespace, s.Name, s.StartType)
	sb.session = s
	return s, nil
}

// explain turns an operation's error into one with the session's state when the session
// ended under it (idle timeout, max lifetime, pod lost), and forgets that session so the
// next call opens a new one.
func (sb *mcpSandbox) explain(s *hpclient.Session, err error) error {
	if err == nil {
		return nil
	}
	kube, kerr := sb.root.kube()
	if kerr != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	obj := &agentsv1alpha1.AgentSession{}
	gerr := kube.Get(ctx, crclient.ObjectKey{Namespace: s.Namespace, Name: s.Name}, obj)
	var gone error
	switch {
	case apierrors.IsNotFound(gerr):
		gone = fmt.Errorf("session %s was deleted: %w", s.Name, err)
	case gerr == nil && ended(*obj):
		gone = &hpclient.SessionError{Session: s.Name, Phase: obj.Status.Phase, Reason: obj.Status.EndReason,
			Message: fmt.Sprintf("the session ended (%v)", err)}
	default:
		return err
	}
	sb.mu.Lock()
	if sb.session == s {
		sb.session = nil
	}
	sb.mu.Unlock()
	_ = s.Close(ctx, hpclient.CloseOptions{})
	return fmt.Errorf("%w; the next tool call opens a new session", gone)
}

// close ends the session, if one is open.
func (sb *mcpSandbox) close() error {
	sb.mu.Lock()
	s := sb.session
	sb.session = nil
	sb.mu.Unlock()
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Fprintf(sb.root.ErrOut, "ending session %s/%s\n", s.Namespace, s.Name)
	return s.Close(ctx, hpclient.CloseOptions{})
}

type runCommandIn struct {
	Args           []string `json:"args" jsonschema:"the program and its arguments"`
	Stdin          string   `json:"stdin,omitempty" jsonschema:"text for the program's standard input"`
	WorkDir        string   `json:"workdir,omitempty" jsonschema:"directory to run in"`
	TimeoutSeconds int      `json:"timeout_seconds,omitempty" jsonschema:"end the command after this many seconds"`
}

type runCommandOut struct {
	ExitCode  int    `json:"exit_code"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Truncated bool   `json:"truncated,omitempty" jsonschema:"true when stdout or stderr was cut at the output limit"`
}

func (sb *mcpSandbox) runCommand(ctx context.Context, req *mcp.CallToolRequest, in runCommandIn) (*mcp.CallToolResult, runCommandOut, error) {
	if len(in.Args) == 0 {
		return nil, runCommandOut{}, errors.New("args is empty: name a program")
	}
	s, err := sb.get(ctx, req)
	if err != nil {
		return nil, runCommandOut{}, err
	}
	stdout, stderr := capbuf.New(sb.o.maxOutput), capbuf.New(sb.o.maxOutput)
	c := hpclient.Command{Args: in.Args, Stdout: stdout, Stderr: stderr, WorkDir: in.WorkDir,
		Timeout: time.Duration(in.TimeoutSeconds) * time.Second}
	if in.Stdin != "" {
		c.Stdin = strings.NewReader(in.Stdin)
	}
	code, err := s.Run(ctx, c)
	if err != nil {
		return nil, runCommandOut{}, sb.explain(s, err)
	}
	out := runCommandOut{ExitCode: code, Stdout: stdout.String(), Stderr: stderr.String(), Truncated: stdout.Cut() || stderr.Cut()}
	text := fmt.Sprintf("exit code %d\n--- stdout ---\n%s\n--- stderr ---\n%s", out.ExitCode, out.Stdout, out.Stderr)
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, out, nil
}

type writeFileIn struct {
	Path    string `json:"path" jsonschema:"the file's path in the sandbox"`
	Content string `json:"content" jsonschema:"the file's text"`
}

type doneOut struct {
	Message string `json:"message"`
}

func (sb *mcpSandbox) writeFile(ctx context.Context, req *mcp.CallToolRequest, in writeFileIn) (*mcp.CallToolResult, doneOut, error) {
	dir, base := hpclient.SplitSandboxPath(in.Path)
	if base == "" || base == "." || base == ".." {
		return nil, doneOut{}, fmt.Errorf("path %q names no file", in.Path)
	}
	s, err := sb.get(ctx, req)
	if err != nil {
		return nil, doneOut{}, err
	}
	tmp, err := os.MkdirTemp("", "kubectl-agents-")
	if err != nil {
		return nil, doneOut{}, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	local := filepath.Join(tmp, base)
	if err := os.WriteFile(local, []byte(in.Content), 0o644); err != nil {
		return nil, doneOut{}, err
	}
	if err := s.Upload(ctx, local, dir); err != nil {
		return nil, doneOut{}, sb.explain(s, err)
	}
	return nil, doneOut{Message: fmt.Sprintf("wrote %d bytes to %s", len(in.Content), in.Path)}, nil
}

type readFileIn struct {
	Path string `json:"path" jsonschema:"the file's path in the sandbox"`
}

type readFileOut struct {
	Content   string `json:"content"`
	Encoding  string `json:"encoding" jsonschema:"text or base64"`
	Size      int64  `json:"size"`
	Truncated bool   `json:"truncated,omitempty" jsonschema:"true when the content was cut at the output limit"`
}

func (sb *mcpSandbox) readFile(ctx context.Context, req *mcp.CallToolRequest, in readFileIn) (*mcp.CallToolResult, readFileOut, error) {
	_, base := hpclient.SplitSandboxPath(in.Path)
	if base == "" || base == "." || base == ".." {
		return nil, readFileOut{}, fmt.Errorf("path %q names no file", in.Path)
	}
	s, err := sb.get(ctx, req)
	if err != nil {
		return nil, readFileOut{}, err
	}
	head, err := s.ReadFile(ctx, in.Path, int64(sb.o.maxOutput))
	if err != nil {
		return nil, readFileOut{}, sb.explain(s, err)
	}
	buf := head.Data
	out := readFileOut{Size: head.Size, Truncated: head.Truncated, Encoding: "text"}
	if utf8.Valid(buf) || out.Truncated && utf8.Valid(capbuf.TrimPartialRune(buf)) {
		out.Content = string(capbuf.TrimPartialRune(buf))
	} else {
		out.Encoding, out.Content = "base64", base64.StdEncoding.EncodeToString(buf)
	}
	text := out.Content
	if out.Truncated {
		text += fmt.Sprintf("\n[... truncated: %d of %d bytes shown]", len(buf), out.Size)
	}
	if out.Encoding == "base64" {
		text = "(base64) " + text
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, out, nil
}

type listDirIn struct {
	Path string `json:"path,omitempty" jsonschema:"the directory in the sandbox (default: the working directory)"`
}

func (sb *mcpSandbox) listDir(ctx context.Context, req *mcp.CallToolRequest, in listDirIn) (*mcp.CallToolResult, runCommandOut, error) {
	path := in.Path
	if path == "" {
		path = "."
	}
	var args []string
	if strings.EqualFold(sb.root.sandboxOS, "linux") {
		args = []string{"ls", "-la", "--", path}
	} else {
		args = []string{"powershell.exe", "-NoProfile", "-NonInteractive", "-Command",
			"Get-ChildItem -Force -LiteralPath '" + strings.ReplaceAll(path, "'", "''") +
				"' | Format-Table -AutoSize Mode,LastWriteTime,Length,Name | Out-String -Width 200"}
	}
	res, out, err := sb.runCommand(ctx, req, runCommandIn{Args: args})
	if err == nil && out.ExitCode != 0 {
		return nil, out, fmt.Errorf("list %s: exit code %d: %s", path, out.ExitCode, strings.TrimSpace(out.Stderr+out.Stdout))
	}
	if err == nil {
		res = &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: out.Stdout}}}
	}
	return res, out, err
}

type uploadIn struct {
	LocalPath string `json:"local_path" jsonschema:"a local file or directory inside the workspace"`
	RemoteDir string `json:"remote_dir,omitempty" jsonschema:"an existing directory of the sandbox (default: the working directory)"`
}

func (sb *mcpSandbox) upload(ctx context.Context, req *mcp.CallToolRequest, in uploadIn) (*mcp.CallToolResult, doneOut, error) {
	rel, ask, err := sb.localSource(ctx, req, in.LocalPath)
	if ask != nil || err != nil {
		return ask, doneOut{}, err
	}
	s, err := sb.get(ctx, req)
	if err != nil {
		return nil, doneOut{}, err
	}
	if err := s.UploadFrom(ctx, sb.ws.root, rel, in.RemoteDir); err != nil {
		return nil, doneOut{}, sb.explain(s, err)
	}
	return nil, doneOut{Message: fmt.Sprintf("uploaded %s into %q", in.LocalPath, in.RemoteDir)}, nil
}

type downloadIn struct {
	RemotePath string `json:"remote_path" jsonschema:"a file or directory of the sandbox"`
	LocalDir   string `json:"local_dir" jsonschema:"a local directory inside the workspace (created if needed)"`
}

func (sb *mcpSandbox) download(ctx context.Context, req *mcp.CallToolRequest, in downloadIn) (*mcp.CallToolResult, doneOut, error) {
	dst, ask, err := sb.localDirs(ctx, req, []string{in.LocalDir})
	if ask != nil || err != nil {
		return ask, doneOut{}, err
	}
	defer closeAll(dst)
	s, err := sb.get(ctx, req)
	if err != nil {
		return nil, doneOut{}, err
	}
	if err := s.DownloadInto(ctx, in.RemotePath, dst[0]); err != nil {
		return nil, doneOut{}, sb.explain(s, err)
	}
	return nil, doneOut{Message: fmt.Sprintf("downloaded %s into %s", in.RemotePath, in.LocalDir)}, nil
}

// localSource checks a local path to upload: inside the workspace and the client's roots.
func (sb *mcpSandbox) localSource(ctx context.Context, req *mcp.CallToolRequest, p string) (string, *mcp.CallToolResult, error) {
	roots, ask, err := clientRoots(ctx, req)
	if ask != nil || err != nil {
		return "", ask, err
	}
	rel, err := sb.ws.source(p)
	if err != nil {
		return "", nil, err
	}
	return rel, nil, sb.ws.insideRoots(p, rel, roots)
}

// localDirs checks, creates and opens local directories to download into: all inside
// the workspace and the client's roots, or none. The caller closes them.
func (sb *mcpSandbox) localDirs(ctx context.Context, req *mcp.CallToolRequest, paths []string) ([]*os.Root, *mcp.CallToolResult, error) {
	roots, ask, err := clientRoots(ctx, req)
	if ask != nil || err != nil {
		return nil, ask, err
	}
	for _, p := range paths {
		rel, err := sb.ws.rel(p)
		if err != nil {
			return nil, nil, err
		}
		if err := sb.ws.insideRoots(p, rel, roots); err != nil {
			return nil, nil, err
		}
	}
	var dirs []*os.Root
	for _, p := range paths {
		dst, err := sb.ws.destination(p)
		if err != nil {
			closeAll(dirs)
			return nil, nil, err
		}
		dirs = append(dirs, dst)
	}
	return dirs, nil, nil
}

func closeAll(dirs []*os.Root) {
	for _, d := range dirs {
		_ = d.Close()
	}
}

// timed bounds a tool call by --tool-timeout, and says so when the call ran out of it.
func timed[In, Out any](timeout *time.Duration, h mcp.ToolHandlerFor[In, Out]) mcp.ToolHandlerFor[In, Out] {
	return func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		d := *timeout
		ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf(
			"the tool call ran out of its time (kubectl agents mcp --tool-timeout %s): %w", d, context.DeadlineExceeded))
		defer cancel()
		res, out, err := h(ctx, req, in)
		if err != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) && !strings.Contains(err.Error(), "--tool-timeout") {
			err = fmt.Errorf("%w (kubectl agents mcp --tool-timeout %s)", err, d)
		}
		return res, out, err
	}
}

type exportIn struct {
	RemotePath string `json:"remote_path"`
	LocalDir   string `json:"local_dir" jsonschema:"a local directory inside the workspace (created if needed)"`
}

type endSessionIn struct {
	Exports []exportIn `json:"exports,omitempty" jsonschema:"paths to download before the end"`
}

func (sb *mcpSandbox) endSession(ctx context.Context, req *mcp.CallToolRequest, in endSessionIn) (*mcp.CallToolResult, doneOut, error) {
	// Every export's local directory is checked before anything ends: a refused one
	// leaves the session open, for the model to fix the path.
	paths := make([]string, len(in.Exports))
	for i, e := range in.Exports {
		paths[i] = e.LocalDir
	}
	dirs, ask, err := sb.localDirs(ctx, req, paths)
	if ask != nil || err != nil {
		return ask, doneOut{}, err
	}
	defer closeAll(dirs)
	sb.mu.Lock()
	s := sb.session
	sb.session = nil
	sb.mu.Unlock()
	if s == nil {
		return nil, doneOut{Message: "no session was open"}, nil
	}
	var errs []error
	for i, e := range in.Exports {
		if err := s.DownloadInto(ctx, e.RemotePath, dirs[i]); err != nil {
			errs = append(errs, fmt.Errorf("export %s: %w", e.RemotePath, err))
		}
	}
	if err := s.Close(ctx, hpclient.CloseOptions{}); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, doneOut{}, fmt.Errorf("end session %s: %w", s.Name, err)
	}
	return nil, doneOut{Message: fmt.Sprintf("session %s ended", s.Name)}, nil
}
