package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// ListPodUIDs returns the UIDs of the node's pods, whatever their phase. For a mirror pod it
// also returns the UID of its static pod: the kubelet runs a static pod under its own UID,
// which the runtime records, and the mirror pod on the API server has another UID but names
// the static pod's in its kubernetes.io/config.mirror annotation (config.hash when that is
// empty). Whoever may create pods on the node can set that annotation, but a forged one can
// only keep a VM from being reaped, never get one reaped.
func (l APIPodLister) ListPodUIDs(ctx context.Context) (map[types.UID]struct{}, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := l.Reader.List(ctx, list, client.MatchingFields{"spec.nodeName": l.NodeName}); err != nil {
		return nil, err
	}
	uids := make(map[types.UID]struct{}, len(list.Items))
	for i := range list.Items {
		p := &list.Items[i]
		uids[p.UID] = struct{}{}
		if uid := staticPodUID(p.Annotations); uid != "" {
			uids[uid] = struct{}{}
		}
	}
	return uids, nil
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

// SummaryAnnotation reads the annotation from the API server.
func (n KubeNode) SummaryAnnotation(ctx context.Context) (string, error) {
	node := &metav1.PartialObjectMetadata{}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if err := n.Reader.Get(ctx, client.ObjectKey{Name: n.NodeName}, node); err != nil {
		return "", err
	}
	return node.Annotations[SummaryAnnotation], nil
}

// SetSummaryAnnotation merge-patches the annotation; it touches no other field.
func (n KubeNode) SetSummaryAnnotation(ctx context.Context, value string) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{SummaryAnnotation: value}},
	})
	if err != nil {
		return err
	}
	return n.Client.Patch(ctx, n.node(), client.RawPatch(types.MergePatchType, patch))
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
