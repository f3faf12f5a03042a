//go:build !windows

package testbed

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A node that kwok does not run: its pods stay as the API server leaves them, so a
// terminating pod there keeps its grace period (kwok deletes a terminating pod at once,
// with a grace of 0).
const (
	// UnmanagedNodeLabel holds the unmanaged node's name: a pod selects it with this label.
	UnmanagedNodeLabel = "hyperpool-test/unmanaged-node"
	// UnmanagedNodeTaint keeps every pod that does not tolerate it off the unmanaged node.
	UnmanagedNodeTaint = "hyperpool-test/unmanaged"
)

// CreateUnmanagedWindowsNode creates, with the test bed's admin client, a Windows node of the
// given build that kwok does not run, labelled with its name under UnmanagedNodeLabel and
// tainted with UnmanagedNodeTaint, so that only pods that select it and tolerate every taint
// land on it. It is deleted at the end of the test. It returns the node's name.
func (e *Env) CreateUnmanagedWindowsNode(t testing.TB, build string) string {
	t.Helper()
	ctx := context.Background()
	name := "unmanaged-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 63 {
		name = name[:63]
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelOSStable:   "windows",
			corev1.LabelArchStable: "amd64",
			corev1.LabelHostname:   name,
			WindowsBuildLabel:      build,
			UnmanagedNodeLabel:     name,
		}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: UnmanagedNodeTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
	}
	if err := e.Client.Create(ctx, node); err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), node) })
	room := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("10")}
	before := node.DeepCopy()
	node.Status.Capacity, node.Status.Allocatable = room, room.DeepCopy()
	node.Status.NodeInfo.OperatingSystem, node.Status.NodeInfo.Architecture = "windows", "amd64"
	// A merge patch: the node lifecycle controller writes the new node's status too.
	if err := e.Client.Status().Patch(ctx, node, client.MergeFrom(before)); err != nil {
		t.Fatalf("setting node %s's capacity: %v", name, err)
	}
	return name
}
