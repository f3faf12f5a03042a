//go:build !windows

package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hyperpool/hyperpool/test/testbed"
)

// RenderChart renders charts/hyperpool with helm template as release in namespace, with
// the given helm flags (e.g. "--show-only", "templates/deployment.yaml", "--set", "replicas=0").
func RenderChart(e *testbed.Env, release, namespace string, flags ...string) ([]byte, error) {
	helm := e.BinaryPath("helm")
	if _, err := os.Stat(helm); err != nil {
		helm = filepath.Join(e.RepoRoot, "bin", "k8s", "helm")
	}
	args := append([]string{"template", release, filepath.Join(e.RepoRoot, "charts", "hyperpool"), "--namespace", namespace}, flags...)
	cmd := exec.Command(helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %w\n%s", err, stderr.String())
	}
	return out, nil
}

// CreateManifest creates, with c, every object of a multi-document YAML stream (as
// RenderChart returns it) but those of the kinds in skip, in the order given; objects that
// already exist are left as they are. It returns the objects created.
func CreateManifest(ctx context.Context, c client.Client, manifest []byte, skip ...string) ([]*unstructured.Unstructured, error) {
	objs, err := decodeManifest(manifest)
	if err != nil {
		return nil, err
	}
	var created []*unstructured.Unstructured
	for _, u := range objs {
		if slices.Contains(skip, u.GetKind()) {
			continue
		}
		if err := c.Create(ctx, u); err != nil {
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return created, fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		created = append(created, u)
	}
	return created, nil
}
