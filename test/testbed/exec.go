//go:build !windows

package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// The exec server plays the part of the kubelet's streaming endpoint for the simulated
// nodes (Options.ServeExec): kube-apiserver proxies `pods/exec` to it as it would to a
// kubelet, and it runs the command as a local process. A client's exec therefore takes the
// real path, client-go's remotecommand (WebSocket or SPDY) to kube-apiserver, then SPDY to
// the node, then a process, and gets back stdout, stderr and the exit code.
//
// Why not kwok's own server (--server-address with a ClusterExec)? It was tried: the path
// works, but kwok v0.8.0 wraps the process's exit error before handing it back, so every
// non-zero exit reaches the client as "Internal error occurred: ... exit status 3" with no
// exit code. A client under test must see exit codes as a real kubelet reports them.
//
// Each pod gets its own working directory, its "sandbox filesystem": PodDir. Nothing is
// shared between pods, as between the utility VMs of real sandboxes.

const (
	// execIdleTimeout closes an exec stream with no traffic for this long; the kubelet's
	// default is 4 hours, kept here so a long silent command is not cut.
	execIdleTimeout = 4 * time.Hour
	// execStreamCreationTimeout bounds the stream setup, as the kubelet's default does.
	execStreamCreationTimeout = 30 * time.Second
	// execWaitDelay is how long the server waits, once a command exited, for output still
	// held open by processes it left behind, before it closes the streams.
	execWaitDelay = 2 * time.Second
)

// execServer serves /exec/{namespace}/{pod}/{container} over HTTPS on 127.0.0.1.
type execServer struct {
	root   string // one directory per pod below: root/<namespace>/<pod>
	server *httptest.Server
	ctx    context.Context // cancelled by close: kills every running command
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startExecServer starts the server on a free loopback port, with a self-signed
// certificate (kube-apiserver checks a kubelet's certificate only when it is given
// --kubelet-certificate-authority, which the test bed does not set).
func startExecServer(root string) (*execServer, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create exec root %s: %w", root, err)
	}
	s := &execServer{root: root}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", s.serveExec)
	s.server = httptest.NewUnstartedServer(mux)
	// The server's own log would print TLS handshake noise to the test output.
	s.server.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.server.StartTLS()
	return s, nil
}

// port is the server's TCP port on 127.0.0.1.
func (s *execServer) port() int { return s.server.Listener.Addr().(*net.TCPAddr).Port }

// close kills the running commands and stops the server.
func (s *execServer) close() {
	if s == nil {
		return
	}
	s.cancel()
	s.server.CloseClientConnections()
	s.server.Close()
	s.wg.Wait()
}

// podDir is the working directory of the pod's commands.
func (s *execServer) podDir(namespace, pod string) string {
	return filepath.Join(s.root, namespace, pod)
}

func (s *execServer) serveExec(w http.ResponseWriter, req *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	namespace, pod, container := req.PathValue("namespace"), req.PathValue("pod"), req.PathValue("container")
	opts, err := remotecommand.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, req, &podExecutor{server: s, namespace: namespace}, pod, "", container,
		req.URL.Query()["command"], opts, execIdleTimeout, execStreamCreationTimeout,
		remotecommand.SupportedStreamingProtocols)
}

// podExecutor runs commands for the pods of one namespace.
type podExecutor struct {
	server    *execServer
	namespace string
}

// ExecInContainer runs cmd in the pod's directory. A terminal (tty) is not simulated: with
// one, stderr goes to stdout, as it would through a terminal.
func (x *podExecutor) ExecInContainer(ctx context.Context, pod, _, _ string, cmd []string,
	in io.Reader, out, errOut io.WriteCloser, tty bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	dir := x.server.podDir(x.namespace, pod)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create pod directory: %w", err)
	}
	// The request's context ends when the client goes away; the server's when it stops.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(x.server.ctx, cancel)
	defer stop()

	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Dir = dir
	c.Env = append(os.Environ(), "PWD="+dir)
	// Its own process group, killed as a whole, so no grandchild outlives the command.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = execWaitDelay
	if out != nil {
		c.Stdout = out
	}
	if errOut != nil {
		c.Stderr = errOut
	} else if tty {
		c.Stderr = c.Stdout
	}
	var stdin io.WriteCloser
	if in != nil {
		var err error
		if stdin, err = c.StdinPipe(); err != nil {
			return err
		}
	}
	if err := c.Start(); err != nil {
		// As a kubelet: the runtime cannot start the command. kubectl shows the message.
		return fmt.Errorf("start %s: %w", cmd[0], err)
	}
	if stdin != nil {
		// Not waited for: a command may exit without reading all of its input, and the
		// copy ends when the stream closes after this returns.
		go func() {
			_, _ = io.Copy(stdin, in)
			_ = stdin.Close()
		}()
	}
	err := c.Wait()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code := exitErr.ExitCode()
		if code < 0 { // killed by a signal
			code = 128 + int(exitErr.Sys().(syscall.WaitStatus).Signal())
		}
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil // exited 0, but something it started kept its output open
	}
	return err
}

// execAddressTypes is kube-apiserver's --kubelet-preferred-address-types with the exec
// server: reach a node by its InternalDNS address first, which simulated nodes set to
// 127.0.0.1. Their InternalIP stays a simulated address (pods' host IPs), and the default
// order would try the Hostname, the node's name, which does not resolve.
var execAddressTypes = strings.Join([]string{"InternalDNS", "InternalIP", "Hostname", "ExternalDNS", "ExternalIP"}, ",")

// PodDir returns the directory where commands exec'd into the pod run, its simulated
// filesystem (Options.ServeExec). It exists once a command has run there.
func (e *Env) PodDir(namespace, pod string) string {
	if e.exec == nil {
		return ""
	}
	return e.exec.podDir(namespace, pod)
}

// ExecPort is the port of the exec server on 127.0.0.1, that simulated nodes give as
// their kubelet port; 0 without Options.ServeExec.
func (e *Env) ExecPort() int {
	if e.exec == nil {
		return 0
	}
	return e.exec.port()
}

// setExecEndpoint points a simulated node's kubelet endpoint at the exec server.
func (e *Env) setExecEndpoint(node *corev1.Node) {
	if e.exec == nil {
		return
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(e.exec.port())
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "127.0.0.1"})
}
