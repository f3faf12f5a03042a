package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// APIRuntimeClassLister lists the cluster's RuntimeClasses (node.k8s.io/v1) from the API
// server. A handful of objects read every few minutes: no cache (and no informer) needed.
type APIRuntimeClassLister struct {
	Reader client.Reader // the manager's APIReader
}

// ListRuntimeClasses returns every RuntimeClass.
func (l APIRuntimeClassLister) ListRuntimeClasses(ctx context.Context) ([]nodev1.RuntimeClass, error) {
	list := &nodev1.RuntimeClassList{}
	if err := l.Reader.List(ctx, list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Labels reads the Node's labels from the API server.
func (n KubeNode) Labels(ctx context.Context) (map[string]string, error) {
	node, err := n.metadata(ctx)
	if err != nil {
		return nil, err
	}
	return node.Labels, nil
}

func (n KubeNode) metadata(ctx context.Context) (*metav1.PartialObjectMetadata, error) {
	node := &metav1.PartialObjectMetadata{}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if err := n.Reader.Get(ctx, client.ObjectKey{Name: n.NodeName}, node); err != nil {
		return nil, err
	}
	return node, nil
}

// SetLabels makes the Node's labels under prefix exactly want, with a JSON merge patch that
// names only the keys under prefix that change (null removes one): the kubelet and others
// keep writing the other labels, and a merge patch of single keys cannot drop theirs. It
// reads the Node first to know which labels under prefix to remove, and writes nothing when
// they are already want.
func (n KubeNode) SetLabels(ctx context.Context, prefix string, want map[string]string) (bool, error) {
	if prefix == "" {
		return false, fmt.Errorf("an empty label prefix would let the agent touch every label")
	}
	for k := range want {
		if !strings.HasPrefix(k, prefix) {
			return false, fmt.Errorf("label %s is not under %s", k, prefix)
		}
	}
	node, err := n.metadata(ctx)
	if err != nil {
		return false, err
	}
	changes := labelChanges(node.Labels, prefix, want)
	if len(changes) == 0 {
		return false, nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": changes}})
	if err != nil {
		return false, err
	}
	if err := n.Client.Patch(ctx, n.node(), client.RawPatch(types.MergePatchType, patch)); err != nil {
		return false, err
	}
	return true, nil
}

// labelChanges is the merge patch of labels that turns the labels under prefix of have into
// want: a value for each key to add or change, nil for each key to remove.
func labelChanges(have map[string]string, prefix string, want map[string]string) map[string]any {
	changes := map[string]any{}
	for k := range have {
		if _, keep := want[k]; strings.HasPrefix(k, prefix) && !keep {
			changes[k] = nil
		}
	}
	for k, v := range want {
		if cur, ok := have[k]; !ok || cur != v {
			changes[k] = v
		}
	}
	return changes
}
