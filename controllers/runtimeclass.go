package controllers

import (
	"context"
	"fmt"

	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// buildRuntimeClassName is the name of the Hyper-V RuntimeClass of one guest build: the
// generic class's name and the build, e.g. hyperv-20348. Windows node provisioning
// commonly configures one containerd runtime handler per guest build
// (runhcs-wcow-hypervisor-17763, -20348, -26100) beside the generic runhcs-wcow-hypervisor;
// the chart's runtimeClasses.hypervBuilds renders a RuntimeClass of this name for each.
func buildRuntimeClassName(generic string, build int32) string {
	return fmt.Sprintf("%s-%d", generic, build)
}

// runtimeClassFor returns the RuntimeClass a class's pods use, by name and, when it exists,
// the object (nil when it does not). spec.runtimeClassName wins when set. Otherwise a
// HyperV class takes the RuntimeClass of its spec.windows.imageBuild when the cluster has
// one (its handler boots the guest build the image needs, with its own pause image and
// scheduling), and falls back to the generic one; a Process class takes the process one.
func (f *podFactory) runtimeClassFor(ctx context.Context, sb *agentsv1alpha1.AgentSandbox) (string, *nodev1.RuntimeClass, error) {
	generic := f.runtimeClassName(sb)
	explicit := sb.Spec.RuntimeClassName != nil && *sb.Spec.RuntimeClassName != ""
	if !explicit && isolationOf(sb) == agentsv1alpha1.IsolationHyperV {
		name := buildRuntimeClassName(generic, sb.Spec.Windows.ImageBuild)
		rc, err := f.getRuntimeClass(ctx, name)
		if err != nil || rc != nil {
			return name, rc, err
		}
	}
	rc, err := f.getRuntimeClass(ctx, generic)
	return generic, rc, err
}

// getRuntimeClass reads a RuntimeClass from the cache; nil when it does not exist.
func (f *podFactory) getRuntimeClass(ctx context.Context, name string) (*nodev1.RuntimeClass, error) {
	rc := &nodev1.RuntimeClass{}
	if err := f.reader.Get(ctx, types.NamespacedName{Name: name}, rc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting RuntimeClass %q: %w", name, err)
	}
	return rc, nil
}
