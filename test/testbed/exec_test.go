//go:build !windows

package testbed_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	utilexec "k8s.io/utils/exec"

	"github.com/hyperpool/hyperpool/internal/podstate"
)

// TestExecReachesLocalProcessThroughAPIServer execs into a pod of a simulated Windows node
// the way kubectl exec does (client-go's remotecommand to kube-apiserver, which proxies
// to the node's kubelet endpoint, the test bed's exec server), over WebSocket and over
// SPDY, and gets the command's stdout, stderr, exit code and its own directory back.
func TestExecReachesLocalProcessThroughAPIServer(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	pod := createPod(t, windowsPod(ns, "sandbox"))
	waitForPod(t, pod, "Ready", podstate.Ready)
	other := createPod(t, windowsPod(ns, "other"))
	waitForPod(t, other, "Ready", podstate.Ready)

	for _, protocol := range []string{"websocket", "spdy"} {
		t.Run(protocol, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := execInPod(t, protocol, ns, pod.Name,
				[]string{"sh", "-c", `cat > input.txt; pwd; echo "to stderr" >&2; exit 3`},
				strings.NewReader("from stdin"), &stdout, &stderr)
			var exitErr utilexec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
				t.Fatalf("exec: %v (%T), want exit code 3", err, err)
			}
			if got, want := strings.TrimSpace(stdout.String()), env.PodDir(ns, pod.Name); got != want {
				t.Errorf("stdout %q, want the pod's directory %q", got, want)
			}
			if got := stderr.String(); got != "to stderr\n" {
				t.Errorf("stderr %q, want %q", got, "to stderr\n")
			}
			data, err := os.ReadFile(filepath.Join(env.PodDir(ns, pod.Name), "input.txt"))
			if err != nil || string(data) != "from stdin" {
				t.Errorf("stdin reached the process as %q (%v), want %q", data, err, "from stdin")
			}

			stdout.Reset()
			if err := execInPod(t, protocol, ns, other.Name, []string{"ls"}, nil, &stdout, nil); err != nil {
				t.Fatalf("exec ls in pod %s: %v", other.Name, err)
			}
			if stdout.Len() != 0 {
				t.Errorf("pod %s sees files %q of pod %s; want a directory of its own", other.Name, stdout.String(), pod.Name)
			}
		})
	}

	t.Run("missing command", func(t *testing.T) {
		err := execInPod(t, "websocket", ns, pod.Name, []string{"no-such-command-here"}, nil, &bytes.Buffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), "no-such-command-here") {
			t.Errorf("exec of a missing command: %v, want an error naming it", err)
		}
	})
}

// execInPod runs command in the pod's first container, over the given protocol.
func execInPod(t *testing.T, protocol, ns, pod string, command []string, stdin *strings.Reader, stdout, stderr *bytes.Buffer) error {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	opts := &corev1.PodExecOptions{Container: "sandbox", Command: command, Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stderr != nil}
	url := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(opts, scheme.ParameterCodec).URL()
	var executor remotecommand.Executor
	switch protocol {
	case "websocket":
		executor, err = remotecommand.NewWebSocketExecutor(env.Config, http.MethodGet, url.String())
	default:
		executor, err = remotecommand.NewSPDYExecutor(env.Config, http.MethodPost, url)
	}
	if err != nil {
		t.Fatal(err)
	}
	streams := remotecommand.StreamOptions{}
	if stdin != nil {
		streams.Stdin = stdin
	}
	if stdout != nil {
		streams.Stdout = stdout
	}
	if stderr != nil {
		streams.Stderr = stderr
	}
	err = executor.StreamWithContext(t.Context(), streams)
	if protocol == "websocket" && (httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)) {
		t.Fatalf("WebSocket exec was refused (%v); the API server should accept it", err)
	}
	return err
}
