package nodeagent

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func pod(ns, name, uid, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}, Spec: corev1.PodSpec{NodeName: node}}
}

// nodeFieldReader serves a pod list with a spec.nodeName field selector as the API server
// does (the fake client's field indexes see metadata-only objects, which have no spec).
type nodeFieldReader struct{ client.Client }

func (r nodeFieldReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	node, ok := lo.FieldSelector.RequiresExactMatch("spec.nodeName")
	if !ok || lo.FieldSelector.String() != "spec.nodeName="+node {
		return fmt.Errorf("pods listed without an exact spec.nodeName selector: %v", lo.FieldSelector)
	}
	meta, ok := list.(*metav1.PartialObjectMetadataList)
	if !ok {
		return fmt.Errorf("listed %T, want metadata only", list)
	}
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods); err != nil {
		return err
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == node {
			meta.Items = append(meta.Items, metav1.PartialObjectMetadata{ObjectMeta: p.ObjectMeta})
		}
	}
	return nil
}

func TestKubeAdapters(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "win-1", UID: "node-uid",
		Annotations: map[string]string{"other": "kept"}, Labels: map[string]string{"kubernetes.io/os": "windows"}}}
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(node, pod("a", "p1", "u1", "win-1"), pod("b", "p2", "u2", "win-1"), pod("a", "p3", "u3", "win-2")).
		Build()

	uids, err := APIPodLister{Reader: nodeFieldReader{c}, NodeName: "win-1"}.ListPodUIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := uids["u3"]; len(uids) != 2 || ok {
		t.Errorf("pods of win-1 = %v, want u1 and u2", uids)
	}

	uid, err := CheckNode(ctx, c, "win-1")
	if err != nil || uid != "node-uid" {
		t.Errorf("CheckNode = %q, %v", uid, err)
	}
	if _, err := CheckNode(ctx, c, "win-9"); err == nil {
		t.Error("CheckNode accepted a node that does not exist")
	}
	if _, err := CheckNode(ctx, c, ""); err == nil {
		t.Error("CheckNode accepted an empty name")
	}

	rec := events.NewFakeRecorder(10)
	kn := KubeNode{Reader: c, Client: c, Recorder: rec, NodeName: "win-1", NodeUID: uid}
	if v, err := kn.SummaryAnnotation(ctx); err != nil || v != "" {
		t.Errorf("SummaryAnnotation = %q, %v", v, err)
	}
	want := Summary{VMs: 2, MemoryBytes: 3 * gib}.String()
	if err := kn.SetSummaryAnnotation(ctx, want); err != nil {
		t.Fatal(err)
	}
	if v, err := kn.SummaryAnnotation(ctx); err != nil || v != want {
		t.Errorf("SummaryAnnotation after set = %q, %v", v, err)
	}
	got := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: "win-1"}, got); err != nil {
		t.Fatal(err)
	}
	if got.Annotations["other"] != "kept" || got.Labels["kubernetes.io/os"] != "windows" {
		t.Errorf("the patch touched other fields: %v %v", got.Annotations, got.Labels)
	}
	kn.Event(corev1.EventTypeWarning, ReasonLeakedVM, "Report", "VM x@vm leaked, 100% sure")
	if e := <-rec.Events; !strings.Contains(e, ReasonLeakedVM) || !strings.Contains(e, "100% sure") {
		t.Errorf("event = %q", e)
	}
}
