package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// APIPodLister lists the pods bound to one node straight from the API server: a quorum read
// with a spec.nodeName field selector, metadata only. It must not be a cached reader: a
// stale cache that misses a new pod would make its VM look leaked.
type APIPodLister struct {
	Reader   client.Reader // the manager's APIReader
	NodeName string
}

// configHashAnnotation is the kubelet's hash of a static pod's config, which is also the
// static pod's UID; the kubelet copies it to the mirror pod (k8s.io/kubernetes
// pkg/kubelet/types ConfigHashAnnotationKey).
const configHashAnnotation = "kubernetes.io/config.hash"

// ListPods returns the node's pods by UID, whatever their phase, with their class and the
// UVM size they ask for. For a mirror pod it also returns it under the UID of its static
// pod: the kubelet runs a static pod under its own UID, which the runtime records, and the
// mirror pod on the API server has another UID but names the static pod's in its
// kubernetes.io/config.mirror annotation (config.hash when that is empty). Whoever may
// create pods on the node can set that annotation, but a forged one can only keep a VM from
// being reaped, never get one reaped.
func (l APIPodLister) ListPods(ctx context.Context) (map[types.UID]PodMeta, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := l.Reader.List(ctx, list, client.MatchingFields{"spec.nodeName": l.NodeName}); err != nil {
		return nil, err
	}
	pods := make(map[types.UID]PodMeta, len(list.Items))
	for i := range list.Items {
		p := &list.Items[i]
		meta := PodMeta{Namespace: p.Namespace, Name: p.Name, Sandbox: p.Labels[v1alpha1.ClassLabel]}
		meta.RequestedMiB, _ = uvm.RequestedMiB(p.Annotations)
		pods[p.UID] = meta
		if uid := staticPodUID(p.Annotations); uid != "" {
			pods[uid] = meta
		}
	}
	return pods, nil
}

// staticPodUID is the UID of the static pod a mirror pod stands for, "" for other pods.
func staticPodUID(annotations map[string]string) types.UID {
	mirror, ok := annotations[corev1.MirrorPodAnnotationKey]
	if !ok {
		return ""
	}
	if mirror == "" {
		mirror = annotations[configHashAnnotation]
	}
	return types.UID(mirror)
}

// KubeNode reports on one Node: the summary annotation (a JSON merge patch of that one key)
// and Events regarding the Node.
type KubeNode struct {
	// Reader reads the Node; use the manager's APIReader (a cached client would start an
	// informer on every Node of the cluster for one Get).
	Reader   client.Reader
	Client   client.Client
	Recorder events.EventRecorder // the manager's GetEventRecorder (events.k8s.io/v1)
	NodeName string
	// NodeUID makes Events point at this incarnation of the Node; may be empty.
	NodeUID types.UID
}

func (n KubeNode) node() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.NodeName, UID: n.NodeUID}}
}

// SummaryAnnotation reads the summary annotation from the API server.
func (n KubeNode) SummaryAnnotation(ctx context.Context) (string, error) {
	return n.Annotation(ctx, SummaryAnnotation)
}

// SetSummaryAnnotation merge-patches the summary annotation; it touches no other field.
func (n KubeNode) SetSummaryAnnotation(ctx context.Context, value string) error {
	return n.SetAnnotation(ctx, SummaryAnnotation, value)
}

// Annotation reads one annotation of the Node from the API server.
func (n KubeNode) Annotation(ctx context.Context, key string) (string, error) {
	node := &metav1.PartialObjectMetadata{}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if err := n.Reader.Get(ctx, client.ObjectKey{Name: n.NodeName}, node); err != nil {
		return "", err
	}
	return node.Annotations[key], nil
}

// SetAnnotation merge-patches one annotation ("" removes it); it touches no other field.
func (n KubeNode) SetAnnotation(ctx context.Context, key, value string) error {
	var v any = value
	if value == "" {
		v = nil // JSON merge patch: null deletes the key
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{key: v}},
	})
	if err != nil {
		return err
	}
	return n.Client.Patch(ctx, n.node(), client.RawPatch(types.MergePatchType, patch))
}

// SetTaint adds the taint (present) or removes every taint with its key, and reports
// whether the Node changed. The taints are one list in the Node's spec, which a merge
// patch replaces whole, so the patch carries the resourceVersion it was computed from: a
// taint someone else (the node lifecycle controller, a person) adds meanwhile makes it fail
// with a Conflict instead of being dropped, and it is computed again from a fresh read.
func (n KubeNode) SetTaint(ctx context.Context, taint corev1.Taint, present bool) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node := &corev1.Node{}
		if err := n.Reader.Get(ctx, client.ObjectKey{Name: n.NodeName}, node); err != nil {
			return err
		}
		taints := withTaint(node.Spec.Taints, taint, present)
		if slices.EqualFunc(taints, node.Spec.Taints, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) && a.Value == b.Value }) {
			return nil
		}
		patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
		node.Spec.Taints = taints
		if err := n.Client.Patch(ctx, node, patch); err != nil {
			return err
		}
		changed = true
		return nil
	})
	return changed, err
}

// withTaint returns taints with taint added once (present), or without any taint of its
// key; the others keep their order.
func withTaint(taints []corev1.Taint, taint corev1.Taint, present bool) []corev1.Taint {
	out := make([]corev1.Taint, 0, len(taints)+1)
	found := false
	for _, t := range taints {
		if t.Key != taint.Key {
			out = append(out, t)
		} else if present && !found && t.MatchTaint(&taint) && t.Value == taint.Value {
			out, found = append(out, t), true
		}
	}
	if present && !found {
		out = append(out, taint)
	}
	return out
}

// Event records an Event regarding the Node.
func (n KubeNode) Event(eventType, reason, action, note string) {
	n.Recorder.Eventf(n.node(), nil, eventType, reason, action, "%s", note)
}

// CheckNode fails when the node does not exist: a wrong --node-name would list no pods and
// make every VM look leaked. It returns the Node's UID.
func CheckNode(ctx context.Context, r client.Reader, name string) (types.UID, error) {
	if name == "" {
		return "", fmt.Errorf("the node name is empty")
	}
	node := &metav1.PartialObjectMetadata{}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if err := r.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
		return "", fmt.Errorf("reading node %q: %w", name, err)
	}
	return node.UID, nil
}
