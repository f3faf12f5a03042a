package nodeagent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
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

	uids, err := APIPodLister{Reader: nodeFieldReader{c}, NodeName: "win-1"}.ListPods(ctx)
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

func mirrorPod(name, uid, node string, annotations map[string]string) *corev1.Pod {
	p := pod("kube-system", name, uid, node)
	p.Annotations = annotations
	return p
}

// The kubelet runs a static pod under its own UID (the one the runtime records); the API
// server has a mirror pod with another UID that names the static pod's in its
// kubernetes.io/config.mirror annotation.
func TestListPodsMatchesStaticPods(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		want []types.UID
	}{
		{"regular pod", pod("a", "p1", "u1", "win-1"), []types.UID{"u1"}},
		{"mirror pod", mirrorPod("static-win-1", "mirror-1", "win-1",
			map[string]string{corev1.MirrorPodAnnotationKey: "static-1", "kubernetes.io/config.hash": "static-1"}),
			[]types.UID{"mirror-1", "static-1"}},
		{"mirror pod with an empty mirror annotation: the config hash", mirrorPod("static-win-2", "mirror-2", "win-1",
			map[string]string{corev1.MirrorPodAnnotationKey: "", "kubernetes.io/config.hash": "static-2"}),
			[]types.UID{"mirror-2", "static-2"}},
		{"mirror pod with no UID in its annotations", mirrorPod("static-win-3", "mirror-3", "win-1",
			map[string]string{corev1.MirrorPodAnnotationKey: ""}), []types.UID{"mirror-3"}},
		{"a config hash alone is not a mirror pod", mirrorPod("not-mirror", "u4", "win-1",
			map[string]string{"kubernetes.io/config.hash": "static-4"}), []types.UID{"u4"}},
		{"mirror pod of another node", mirrorPod("static-win-9", "mirror-9", "win-9",
			map[string]string{corev1.MirrorPodAnnotationKey: "static-9"}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(tc.pod).Build()
			got, err := APIPodLister{Reader: nodeFieldReader{c}, NodeName: "win-1"}.ListPods(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			uids := slices.Sorted(maps.Keys(got))
			if !slices.Equal(uids, tc.want) {
				t.Errorf("ListPods UIDs = %v, want %v", uids, tc.want)
			}
		})
	}
}

// End to end through the agent: the VM of a static pod is Live while its mirror pod exists,
// and an orphan once the mirror pod (and so the static pod) is gone.
func TestStaticPodVMNotReaped(t *testing.T) {
	static := PodRef{Namespace: "kube-system", Name: "static-win-1", UID: "static-1", SandboxID: "sss"}
	mirror := mirrorPod("static-win-1", "mirror-1", "win-1",
		map[string]string{corev1.MirrorPodAnnotationKey: "static-1", "kubernetes.io/config.hash": "static-1"})
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(mirror).Build()
	h := newHarness(true, []UtilityVM{vm("sss", time.Hour, 2)}, []PodRef{static})
	h.agent.Pods = APIPodLister{Reader: nodeFieldReader{c}, NodeName: "win-1"}
	for i := range 5 {
		h.now = t0.Add(time.Duration(i) * grace)
		if v := verdicts(h.round(t))["sss@vm"]; v != VerdictLive {
			t.Fatalf("round %d: %s, want Live", i, v)
		}
	}
	if err := c.Delete(context.Background(), mirror); err != nil {
		t.Fatal(err)
	}
	h.round(t)
	h.now = h.now.Add(grace)
	if v := verdicts(h.round(t))["sss@vm"]; v != VerdictOrphan || len(h.host.terminated) != 1 {
		t.Errorf("after the static pod is gone: %s, terminated %v; want a reaped Orphan", v, h.host.terminated)
	}
}

// SetTaint adds the taint once, keeps the Node's other taints in order, and removes only its key.
func TestKubeNodeSetTaint(t *testing.T) {
	ctx := context.Background()
	other := corev1.Taint{Key: "os", Value: "windows", Effect: corev1.TaintEffectNoSchedule}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "win-1"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{other}}}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(node).Build()
	kube := KubeNode{Reader: c, Client: c, NodeName: "win-1"}
	leak := corev1.Taint{Key: DefaultLeakTaintKey, Effect: corev1.TaintEffectPreferNoSchedule}
	taints := func() []corev1.Taint {
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: "win-1"}, n); err != nil {
			t.Fatal(err)
		}
		return n.Spec.Taints
	}
	for _, step := range []struct {
		present, wantChanged bool
		want                 []corev1.Taint
	}{
		{true, true, []corev1.Taint{other, leak}},
		{true, false, []corev1.Taint{other, leak}},
		{false, true, []corev1.Taint{other}},
		{false, false, []corev1.Taint{other}},
	} {
		changed, err := kube.SetTaint(ctx, leak, step.present)
		if err != nil || changed != step.wantChanged {
			t.Fatalf("SetTaint(%t) = %t, %v; want changed %t", step.present, changed, err, step.wantChanged)
		}
		if got := taints(); !slices.EqualFunc(got, step.want, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) && a.Value == b.Value }) {
			t.Fatalf("after SetTaint(%t): taints %v, want %v", step.present, got, step.want)
		}
	}
}

// A taint written by someone else between the agent's read and its patch makes the patch
// fail on the resourceVersion; the agent reads again and keeps that taint.
func TestKubeNodeSetTaintRetriesOnConflict(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "win-1"}}
	lifecycle := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
	var c client.WithWatch
	patches := 0
	c = fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(node).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			patches++
			if patches == 1 { // the node lifecycle controller gets there first
				n := &corev1.Node{}
				if err := cl.Get(ctx, client.ObjectKey{Name: "win-1"}, n); err != nil {
					return err
				}
				n.Spec.Taints = append(n.Spec.Taints, lifecycle)
				if err := cl.Update(ctx, n); err != nil {
					return err
				}
			}
			return cl.Patch(ctx, obj, patch, opts...)
		},
	}).Build()
	leak := corev1.Taint{Key: DefaultLeakTaintKey, Effect: corev1.TaintEffectPreferNoSchedule}
	changed, err := KubeNode{Reader: c, Client: c, NodeName: "win-1"}.SetTaint(ctx, leak, true)
	if err != nil || !changed || patches != 2 {
		t.Fatalf("SetTaint = %t, %v after %d patches; want changed after a retry", changed, err, patches)
	}
	n := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: "win-1"}, n); err != nil {
		t.Fatal(err)
	}
	if len(n.Spec.Taints) != 2 || !n.Spec.Taints[0].MatchTaint(&lifecycle) || !n.Spec.Taints[1].MatchTaint(&leak) {
		t.Errorf("taints = %v, want the lifecycle taint kept and the leak taint added", n.Spec.Taints)
	}
}
