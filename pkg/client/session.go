package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	utilexec "k8s.io/utils/exec"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// Defaults of Options.
const (
	defaultExpiryWarning = time.Minute
	// defaultIdleTimeout is the manager's idle timeout when neither the session nor its
	// class sets one.
	defaultIdleTimeout = 15 * time.Minute
)

// Session is a Ready session: its sandbox runs commands until Close, the hard deadline, or
// the idle timeout. Its methods are safe for concurrent use.
type Session struct {
	// Name and Namespace of the AgentSession.
	Name, Namespace string
	// PodName is the sandbox pod; Container the container commands run in (empty: the
	// pod's only one).
	PodName, Container string
	// StartType is Warm (from the pool) or Cold.
	StartType agentsv1alpha1.StartType
	// ExpiryTime is the hard deadline (status.expiryTime); zero if unknown.
	ExpiryTime time.Time
	// IdleTimeout is the effective idle timeout as far as the client can tell (the
	// session's, capped by its class's); heartbeats come at most once a third of it.
	IdleTimeout time.Duration

	client    *Client
	opts      Options
	heartbeat *heartbeat
	expiring  chan time.Time
	stopTimer func() bool

	closeOnce sync.Once
}

// newSession builds the Session of a Ready AgentSession and starts its heartbeat.
func (c *Client) newSession(ctx context.Context, s *agentsv1alpha1.AgentSession, opts Options) (*Session, error) {
	if opts.Tar == "" {
		opts.Tar = DefaultTar
	}
	if opts.WorkDirArgs == nil {
		opts.WorkDirArgs = WindowsWorkDirArgs
	}
	if opts.ExpiryWarning <= 0 {
		opts.ExpiryWarning = defaultExpiryWarning
	}
	container, err := c.mainContainer(ctx, s.Namespace, s.Status.PodName)
	if err != nil {
		return nil, err
	}
	sess := &Session{
		Name: s.Name, Namespace: s.Namespace, PodName: s.Status.PodName, Container: container,
		StartType: s.Status.StartType, IdleTimeout: c.idleTimeout(ctx, s),
		client: c, opts: opts, expiring: make(chan time.Time, 1),
	}
	if s.Status.ExpiryTime != nil {
		sess.ExpiryTime = s.Status.ExpiryTime.Time
		at := sess.ExpiryTime.Add(-opts.ExpiryWarning)
		t := time.AfterFunc(time.Until(at), func() { sess.expiring <- sess.ExpiryTime })
		sess.stopTimer = t.Stop
	}
	sess.heartbeat = startHeartbeat(sess.IdleTimeout/3, sess.patchLastActivity)
	return sess, nil
}

// idleTimeout is the session's effective idle timeout, computed as the manager does: the
// session's, capped by the class's (or the class's, or 15 minutes), and at most the max
// lifetime. A class the caller cannot read counts as setting nothing.
func (c *Client) idleTimeout(ctx context.Context, s *agentsv1alpha1.AgentSession) time.Duration {
	var class agentsv1alpha1.LifetimeSpec
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := c.kube.Get(ctx, keyOf(s.Namespace, s.Spec.SandboxName), sb); err == nil {
		class = sb.Spec.Lifetime
	}
	idle := defaultIdleTimeout
	if class.IdleTimeout != nil {
		idle = class.IdleTimeout.Duration
	}
	if s.Spec.IdleTimeout != nil && (class.IdleTimeout == nil || s.Spec.IdleTimeout.Duration < idle) {
		idle = s.Spec.IdleTimeout.Duration
	}
	if s.Status.BoundTime != nil && s.Status.ExpiryTime != nil {
		if life := s.Status.ExpiryTime.Sub(s.Status.BoundTime.Time); life > 0 && life < idle {
			idle = life
		}
	}
	return idle
}

// Expiring fires once, Options.ExpiryWarning before the session's hard deadline, with the
// deadline: time to export results. It never fires for a session without a deadline, or
// once Close was called.
func (s *Session) Expiring() <-chan time.Time { return s.expiring }

// Touch tells the session the caller is active: the idle timeout counts from now. The
// heartbeat patch that carries it may come up to a third of the idle timeout later.
func (s *Session) Touch() { s.heartbeat.touch() }

// Command is one process to run in the sandbox.
type Command struct {
	// Args are the program and its arguments, passed as exec arguments: never joined into
	// a shell string. Use cmd.exe /c or powershell.exe -Command for shell features.
	Args []string
	// Stdin, if set, is copied to the process's standard input, then closed.
	Stdin io.Reader
	// Stdout and Stderr, if set, receive the process's output as it comes.
	Stdout, Stderr io.Writer
	// WorkDir, if set, is the directory to run in (through Options.WorkDirArgs).
	WorkDir string
	// Timeout, if set, bounds the command. Reaching it closes the exec stream, which ends
	// the process on the test bed; whether a node's runtime kills it too depends on the
	// runtime.
	Timeout time.Duration
}

// Run runs the command in the sandbox's main container and returns its exit code. An
// error means no exit code is known: the exec failed, the context or timeout ended it, or
// the program could not be started.
func (s *Session) Run(ctx context.Context, cmd Command) (int, error) {
	if len(cmd.Args) == 0 {
		return -1, errors.New("run: no command")
	}
	if cmd.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmd.Timeout)
		defer cancel()
	}
	args := cmd.Args
	if cmd.WorkDir != "" {
		args = s.opts.WorkDirArgs(cmd.WorkDir, args)
	}
	s.heartbeat.begin()
	defer s.heartbeat.end()
	return s.exitCode(ctx, args, s.exec(ctx, args, cmd.Stdin, cmd.Stdout, cmd.Stderr))
}

// exitCode turns an exec's outcome into the command's exit code, or an error when the
// command did not run to its end.
func (s *Session) exitCode(ctx context.Context, args []string, err error) (int, error) {
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr) && exitErr.Exited():
		return exitErr.ExitStatus(), nil
	case ctx.Err() != nil:
		return -1, fmt.Errorf("run %s: %w", args[0], context.Cause(ctx))
	default:
		return -1, fmt.Errorf("run %s in session %s: %w", args[0], s.Name, err)
	}
}

// exec streams one command through pods/exec, WebSocket first and SPDY if the API server
// refuses the upgrade, as kubectl exec does.
func (s *Session) exec(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	opts := &corev1.PodExecOptions{Container: s.Container, Command: args,
		Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stderr != nil}
	if !opts.Stdout && !opts.Stderr && !opts.Stdin {
		// The API server needs at least one stream; discard the output.
		opts.Stdout, stdout = true, io.Discard
	}
	executor, err := s.executor(opts)
	if err != nil {
		return err
	}
	streams := remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	return executor.StreamWithContext(ctx, streams)
}

// restConfigForPods is config set up for the core API, as client-go's typed clients do.
func restConfigForPods(config *rest.Config) *rest.Config {
	c := rest.CopyConfig(config)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return c
}

// patchLastActivity writes the heartbeat annotation.
func (s *Session) patchLastActivity(ctx context.Context, at time.Time) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, agentsv1alpha1.LastActivityAnnotation, at.UTC().Format(time.RFC3339Nano))
	obj := &agentsv1alpha1.AgentSession{}
	obj.Namespace, obj.Name = s.Namespace, s.Name
	return s.client.kube.Patch(ctx, obj, rawMergePatch(patch))
}

// CloseOptions say what Close does before it ends the session.
type CloseOptions struct {
	// Export is downloaded, in order, before the session is deleted.
	Export []ExportSpec
}

// ExportSpec is one path to take out of the sandbox: RemotePath (a file or a directory)
// arrives as LocalDir/<its base name>, as Download does.
type ExportSpec struct {
	RemotePath string
	LocalDir   string
}

// Close downloads the exports, then deletes the session, which destroys its sandbox. The
// session is deleted even when an export fails; every export error is returned, joined
// with a deletion error. A session already gone counts as deleted.
func (s *Session) Close(ctx context.Context, opts CloseOptions) error {
	var errs []error
	for _, e := range opts.Export {
		if err := s.Download(ctx, e.RemotePath, e.LocalDir); err != nil {
			errs = append(errs, fmt.Errorf("export %s: %w", e.RemotePath, err))
		}
	}
	s.closeOnce.Do(func() {
		s.heartbeat.stop()
		if s.stopTimer != nil {
			s.stopTimer()
		}
	})
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	obj := &agentsv1alpha1.AgentSession{}
	obj.Namespace, obj.Name = s.Namespace, s.Name
	if err := s.client.kube.Delete(dctx, obj); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete session %s: %w", s.Name, err))
	}
	return errors.Join(errs...)
}

// WindowsWorkDirArgs runs args in dir through PowerShell, with every argument passed as a
// single-quoted literal (no expansion, no splitting) and the program's exit code kept.
func WindowsWorkDirArgs(dir string, args []string) []string {
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	var b strings.Builder
	b.WriteString("$ErrorActionPreference='Stop'; Set-Location -LiteralPath ")
	b.WriteString(quote(dir))
	b.WriteString("; & ")
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(a))
	}
	b.WriteString("; exit $LASTEXITCODE")
	return []string{"powershell.exe", "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", b.String()}
}

// LinuxWorkDirArgs runs args in dir with env --chdir (GNU coreutils 8.28 or later): the
// arguments reach the program unchanged.
func LinuxWorkDirArgs(dir string, args []string) []string {
	return append([]string{"env", "--chdir=" + dir, "--"}, args...)
}

// executor runs opts in the session's pod through pods/exec: WebSocket, falling back to
// SPDY when the API server (or a proxy) refuses the upgrade, as kubectl exec does.
func (s *Session) executor(opts *corev1.PodExecOptions) (remotecommand.Executor, error) {
	restClient, err := rest.RESTClientFor(restConfigForPods(s.client.config))
	if err != nil {
		return nil, err
	}
	url := restClient.Post().Resource("pods").Namespace(s.Namespace).Name(s.PodName).SubResource("exec").
		VersionedParams(opts, scheme.ParameterCodec).URL()
	ws, err := remotecommand.NewWebSocketExecutor(s.client.config, http.MethodGet, url.String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(s.client.config, http.MethodPost, url)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}
