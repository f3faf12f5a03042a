//go:build !windows

package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/framework"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// The client's tests run on the test bed with pods/exec served (testbed.Options.ServeExec)
// and the manager in-process: every call takes the real path through kube-apiserver, and
// the "sandbox" commands are Linux processes (sh, tar) in each pod's own directory.

const (
	build2022   = "10.0.20348"
	waitTimeout = 30 * time.Second
)

var (
	env *testbed.Env
	cli *hpclient.Client
	// auditLog is kube-apiserver's audit log: every pods/exec request, at level Request,
	// so a test can check what an exec's arguments carried.
	auditLog string
)

// execAuditPolicy records pods/exec requests (their URI holds the command's arguments) and
// nothing else: not the tests' own Secret writes, whose bodies hold the values.
const execAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  resources:
  - group: ""
    resources: ["pods/exec"]
- level: None
`

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	auditDir, err := os.MkdirTemp("", "hyperpool-client-audit-")
	if err != nil {
		panic(err)
	}
	policy := filepath.Join(auditDir, "policy.yaml")
	auditLog = filepath.Join(auditDir, "audit.log")
	if err := os.WriteFile(policy, []byte(execAuditPolicy), 0o600); err != nil {
		panic(err)
	}
	opts := testbed.Options{ServeExec: true, APIServerFlags: map[string][]string{
		"audit-policy-file": {policy}, "audit-log-path": {auditLog}}}
	testbed.Main(m, opts, func(e *testbed.Env) error {
		env = e
		e.BeforeStop(func() { _ = os.RemoveAll(auditDir) }) // Main exits the process: no defer runs
		ctx := context.Background()
		if err := framework.CreateRuntimeClasses(ctx, e); err != nil {
			return err
		}
		if _, err := e.CreateWindowsNodes(ctx, "win2022", 2, build2022); err != nil {
			return err
		}
		if err := applyUserRoles(ctx, e); err != nil {
			return err
		}
		var err error
		if cli, err = hpclient.New(e.Config); err != nil {
			return err
		}
		return framework.StartManager(e, nil, framework.ManagerConfig())
	})
}

// linux are the client options for the test bed's Linux "sandboxes".
func linux(opts hpclient.Options) hpclient.Options {
	opts.Tar = "tar"
	opts.WorkDirArgs = hpclient.LinuxWorkDirArgs
	return opts
}

// newClass creates a class with a warm pool of replicas in a fresh namespace, and returns
// the namespace.
func newClass(t *testing.T, name string, replicas int32) string {
	t.Helper()
	ns := env.CreateNamespace(t)
	if err := env.Client.Create(t.Context(), builders.AgentSandbox(ns, name).Replicas(replicas).Obj()); err != nil {
		t.Fatalf("create class %s: %v", name, err)
	}
	return ns
}

// open opens a session of the class, failing the test on error, and closes it at the end.
func open(t *testing.T, ns, class string, opts hpclient.Options) *hpclient.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	s, err := cli.Open(ctx, ns, class, linux(opts))
	if err != nil {
		t.Fatalf("open a session of %s/%s: %v", ns, class, err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background(), hpclient.CloseOptions{}) })
	return s
}

// getSession reads the session as admin.
func getSession(ctx context.Context, ns, name string) (*agentsv1alpha1.AgentSession, error) {
	s := &agentsv1alpha1.AgentSession{}
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
	return s, err
}

// applyUserRoles creates the ClusterRoles that config/rbac/user_roles.yaml ships.
func applyUserRoles(ctx context.Context, e *testbed.Env) error {
	data, err := os.ReadFile(filepath.Join(e.RepoRoot, "config", "rbac", "user_roles.yaml"))
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		role := &rbacv1.ClusterRole{}
		if err := dec.Decode(role); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if role.Name == "" {
			continue
		}
		if err := e.Client.Create(ctx, role); err != nil {
			return fmt.Errorf("create ClusterRole %s: %w", role.Name, err)
		}
	}
}
