//go:build !windows

// Package helm_test checks the Helm chart (charts/hyperpool) and the kustomize install
// (config/default): they lint, render, pass the API server's own validation, keep least
// privilege, ship the generated CRDs, and install, upgrade and uninstall on a real control
// plane where the manager, running with nothing but the chart's RBAC, binds a session.
package helm_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hyperpool/hyperpool/test/testbed"
)

// env is the package's control plane; each test works in its own namespace.
var env *testbed.Env

// helmHome keeps helm's config, cache and data out of the user's home.
var helmHome string

func TestMain(m *testing.M) {
	testbed.Main(m, testbed.Options{}, func(e *testbed.Env) error {
		env = e
		helmHome = filepath.Join(e.Dir, "helm-home")
		return os.MkdirAll(helmHome, 0o755)
	})
}

// chartDir is the chart under test.
func chartDir() string { return filepath.Join(env.RepoRoot, "charts", "hyperpool") }

// testdata returns the path of a file in this package's testdata.
func testdata(name string) string {
	return filepath.Join(env.RepoRoot, "test", "helm", "testdata", name)
}

// tool finds a binary of hack/tools.sh: in the test bed's assets directory, else in the
// repository's bin/k8s.
func tool(t testing.TB, name string) string {
	t.Helper()
	for _, p := range []string{env.BinaryPath(name), filepath.Join(env.RepoRoot, "bin", "k8s", name)} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found in %s or bin/k8s: run hack/tools.sh", name, env.BinDir)
	return ""
}

// run runs a tool with the test bed's kubeconfig and returns its stdout; it fails the test
// with stderr if the tool fails.
func run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// runErr is run that returns the failure (with stderr) instead of failing the test.
func runErr(t testing.TB, stdin []byte, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(t, name), args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+env.KubeconfigPath,
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	return stdout.Bytes(), nil
}

// helmTemplate renders the chart as release in namespace ns with extra helm flags.
func helmTemplate(t testing.TB, release, ns string, flags ...string) []byte {
	t.Helper()
	args := append([]string{"template", release, chartDir(), "--namespace", ns}, flags...)
	return run(t, nil, "helm", args...)
}

// find returns the objects of a kind.
func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// only returns the single object of a kind and name, failing the test otherwise.
func only(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var hit *unstructured.Unstructured
	for _, o := range find(objs, kind) {
		if o.GetName() == name {
			if hit != nil {
				t.Fatalf("two %s named %s", kind, name)
			}
			hit = o
		}
	}
	if hit == nil {
		t.Fatalf("no %s named %s among %s", kind, name, names(objs))
	}
	return hit
}

func names(objs []*unstructured.Unstructured) string {
	var s []string
	for _, o := range objs {
		s = append(s, o.GetKind()+"/"+o.GetName())
	}
	return strings.Join(s, ", ")
}

// eventually waits for cond; see testbed.Eventually.
// waitTimeout bounds a wait for the control plane or the manager (see testbed.WaitTimeout).
const waitTimeout = testbed.WaitTimeout

func eventually(t testing.TB, timeout time.Duration, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, cond)
}
