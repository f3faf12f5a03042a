//go:build !windows

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/framework"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// The plugin's tests run on the test bed with pods/exec served and the manager
// in-process. The "sandboxes" are Linux processes (sh, tar) in each pod's own directory,
// so the plugin runs with --sandbox-os linux (through KUBECTL_AGENTS_SANDBOX_OS). The
// subprocess tests build the plugin, put it on PATH and run it through the real kubectl
// binary's plugin discovery.

const waitTimeout = 60 * time.Second

var (
	env *testbed.Env
	// pluginDir holds the built kubectl-agents; kubectl is the real kubectl binary.
	pluginDir, kubectl string
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	testbed.Main(m, testbed.Options{ServeExec: true}, func(e *testbed.Env) error {
		env = e
		ctx := context.Background()
		if err := framework.CreateRuntimeClasses(ctx, e); err != nil {
			return err
		}
		if _, err := e.CreateWindowsNodes(ctx, "win2022", 2, "10.0.20348"); err != nil {
			return err
		}
		kubectl = filepath.Join(e.BinDir, "kubectl")
		if _, err := os.Stat(kubectl); err != nil {
			return fmt.Errorf("kubectl: %w", err)
		}
		pluginDir = filepath.Join(e.Dir, "plugin-bin")
		// The release's flags (static, -trimpath): the compiled packages are make test-programs'.
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(pluginDir, "kubectl-agents"), ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build kubectl-agents: %w\n%s", err, out)
		}
		return framework.StartManager(e, nil, framework.ManagerConfig())
	})
}

// newClass creates a class with a warm pool in a fresh namespace and returns the namespace.
func newClass(t *testing.T, name string, replicas int32) string {
	t.Helper()
	ns := env.CreateNamespace(t)
	if err := env.Client.Create(t.Context(), builders.AgentSandbox(ns, name).Replicas(replicas).Obj()); err != nil {
		t.Fatalf("create class %s: %v", name, err)
	}
	return ns
}

// pluginEnv is the environment of a subprocess: the plugin on PATH, the test bed's
// kubeconfig, Linux sandboxes.
func pluginEnv() []string {
	return append(os.Environ(),
		"PATH="+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KUBECONFIG="+env.KubeconfigPath,
		sandboxOSEnv+"=linux")
}

// kubectlAgents runs "kubectl agents ARGS..." and returns stdout, stderr and the exit code.
func kubectlAgents(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	return kubectlAgentsWithin(t, waitTimeout, stdin, args...)
}

// kubectlAgentsWithin is kubectlAgents with a timeout of its own.
func kubectlAgentsWithin(t *testing.T, timeout time.Duration, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"agents"}, args...)...)
	cmd.Env = pluginEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("kubectl agents %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// sessionCount counts the namespace's sessions, as admin.
func sessionCount(t *testing.T, ns string) int {
	t.Helper()
	list := &agentsv1alpha1.AgentSessionList{}
	if err := env.Client.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}

// waitGone waits until the session object is deleted.
func waitGone(t *testing.T, ns, name string) {
	t.Helper()
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &agentsv1alpha1.AgentSession{})
		return apierrors.IsNotFound(err), fmt.Sprintf("session %s/%s still there (%v)", ns, name, err)
	})
}

// waitNoSessions waits until the namespace has no sessions.
func waitNoSessions(t *testing.T, ns string) {
	t.Helper()
	testbed.Eventually(t, waitTimeout, func(context.Context) (bool, string) {
		n := sessionCount(t, ns)
		return n == 0, fmt.Sprintf("%d sessions left in %s", n, ns)
	})
}
