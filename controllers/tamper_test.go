package controllers

import (
	"context"
	"strings"
	"testing"

	"github.com/Microsoft/hcsshim/pkg/annotations"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
	"github.com/hyperpool/hyperpool/test/builders"
)

// A warm pod whose spec a tenant changed (an image, an ephemeral container, a deadline) is
// told apart from what the manager created, through the cache's trimmed copy, whether the
// pod is of the class's current template or an older one.
func TestSpecTamperedThroughTheCache(t *testing.T) {
	sb := builders.AgentSandbox("team", "pool").Obj()
	hash := templateHash(sb)
	created := func() *corev1.Pod {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pool-abcde",
			Labels:      map[string]string{agentsv1alpha1.ClassLabel: "pool", agentsv1alpha1.TemplateHashLabel: hash},
			Annotations: map[string]string{}}, Spec: *sb.Spec.Template.Spec.DeepCopy()}
		pod.Annotations[specDigestAnnotation] = specDigest(&pod.Spec)
		return pod
	}
	for _, tc := range []struct {
		name     string
		change   func(*corev1.Pod)
		tampered bool
	}{
		{"as created", func(*corev1.Pod) {}, false},
		{"as created, of an older template", func(p *corev1.Pod) { p.Labels[agentsv1alpha1.TemplateHashLabel] = "older" }, false},
		{"tolerations added by admission", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists})
		}, false},
		{"image changed", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "attacker.example/evil:1" }, true},
		{"image changed, older template", func(p *corev1.Pod) {
			p.Labels[agentsv1alpha1.TemplateHashLabel] = "older"
			p.Spec.Containers[0].Image = "attacker.example/evil:1"
		}, true},
		{"image and recorded digest changed", func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "attacker.example/evil:1"
			p.Annotations[specDigestAnnotation] = specDigest(&p.Spec)
		}, true},
		{"image changed, recorded digest removed", func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "attacker.example/evil:1"
			delete(p.Annotations, specDigestAnnotation)
		}, true},
		{"ephemeral container added", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
		}, true},
		{"activeDeadlineSeconds set", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](1) }, true},
		{"observed digest forged by the tenant", func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "attacker.example/evil:1"
			p.Annotations[observedSpecDigestAnnotation] = p.Annotations[specDigestAnnotation]
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := created()
			tc.change(pod)
			cached, err := trimPod(pod)
			if err != nil {
				t.Fatal(err)
			}
			why := newTamperCheck(sb, hash).problem(cached.(*corev1.Pod))
			if (why != "") != tc.tampered {
				t.Errorf("specTampered = %q; want tampered %v", why, tc.tampered)
			}
		})
	}
}

// client-go may run the cache transform again on an object it already transformed (a
// relist after kube-apiserver restarted): the pod must keep the digest of its real spec,
// or every warm pod is destroyed as tampered at its bind (found by the chaos test).
func TestTrimPodTwiceKeepsTheObservedDigest(t *testing.T) {
	pod := builders.Pod("team", "pool-abcde").Label(agentsv1alpha1.ClassLabel, "pool").Obj()
	pod.Spec.Containers = []corev1.Container{{Name: "agent", Image: "agent:1"}}
	pod.Annotations = map[string]string{specDigestAnnotation: specDigest(&pod.Spec)}
	once, _ := trimPod(pod.DeepCopy())
	twice, _ := trimPod(once)
	if why := newTamperCheck(builders.AgentSandbox("team", "pool").Obj(), "another").problem(twice.(*corev1.Pod)); why != "" {
		t.Errorf("an untouched pod transformed twice looks tampered: %s", why)
	}
}

// The cache keeps only the labels and annotations the manager reads, each value capped: a
// tenant's annotations on a sandbox pod or a session cost the manager nothing.
func TestCacheTransformsKeepOnlyTheKeysRead(t *testing.T) {
	bloat := strings.Repeat("x", 200*1024)
	pod := builders.Pod("team", "pool-abcde").Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.SessionLabel, "s").
		Label(agentsv1alpha1.TemplateHashLabel, "h").Label("app", "tenant").
		Annotation(uvm.FootprintAnnotation, `{"memory":"1Gi","vcpus":2}`).Annotation(annotations.MemorySizeInMB, "1024").
		Annotation(annotations.ProcessorCount, "2").Annotation("example.com/bloat", bloat).
		Annotation(annotations.ContainerMemorySizeInMB, "5").Obj()
	got, _ := trimPod(pod)
	p := got.(*corev1.Pod)
	wantLabels := []string{agentsv1alpha1.ClassLabel, agentsv1alpha1.SessionLabel, agentsv1alpha1.TemplateHashLabel}
	if len(p.Labels) != len(wantLabels) {
		t.Errorf("pod labels %v; want only %v", p.Labels, wantLabels)
	}
	for _, k := range []string{uvm.FootprintAnnotation, annotations.MemorySizeInMB, annotations.ProcessorCount, observedSpecDigestAnnotation} {
		if _, ok := p.Annotations[k]; !ok {
			t.Errorf("pod annotation %s dropped; the manager reads it", k)
		}
	}
	for _, k := range []string{"example.com/bloat", annotations.ContainerMemorySizeInMB} {
		if _, ok := p.Annotations[k]; ok {
			t.Errorf("pod annotation %s kept; the manager never reads it", k)
		}
	}

	s := builders.AgentSession("team", "s", "pool").Obj()
	s.Labels = map[string]string{"app": "tenant"}
	s.Annotations = map[string]string{agentsv1alpha1.LastActivityAnnotation: bloat, "example.com/bloat": bloat,
		agentsv1alpha1.CredentialsDeliveredAnnotation: "2026-01-01T00:00:00Z"}
	gotS, _ := trimSession(s)
	ts := gotS.(*agentsv1alpha1.AgentSession)
	if len(ts.Labels) != 0 || len(ts.Annotations) != 2 || len(ts.Annotations[agentsv1alpha1.LastActivityAnnotation]) != maxKeptValueBytes {
		t.Errorf("session labels %d, annotations %d (last-activity %d bytes); want 0, 2 (last-activity cut at %d)",
			len(ts.Labels), len(ts.Annotations), len(ts.Annotations[agentsv1alpha1.LastActivityAnnotation]), maxKeptValueBytes)
	}
}

// A foreign controller reference on a sandbox pod does not keep the manager from destroying
// it: before, a controller reference to anything not hyperpool's, added by a tenant to a
// session's pod that an orphaning delete had left without its owner, made destroyPods skip
// the pod, and its VM ran on with no session.
func TestForeignControllerDoesNotSaveAnOrphanedSessionPod(t *testing.T) {
	const ns = "team"
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine", UID: "uid-cm"}}
	pod := builders.Pod(ns, "pool-abcde").Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.SessionLabel, "gone").Obj()
	pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(foreign, corev1.SchemeGroupVersion.WithKind("ConfigMap"))}
	idx := recordingIndexer{}
	if err := RegisterIndexes(context.Background(), idx); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(foreign, pod).
		WithIndex(&corev1.Pod{}, podSessionIndex, idx[podSessionIndex]).Build()
	r := &AgentSessionReconciler{Client: c}
	if err := r.destroyOrphanedPods(context.Background(), types.NamespacedName{Namespace: ns, Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	err := c.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the orphaned session pod with a foreign controller is still there (get: %v); want it destroyed", err)
	}
}

// The bind compares a pod of the class's current template with the digest of that template:
// building a pod must leave the digested fields as the template has them, or every warm pod
// would be destroyed at bind. A template with init containers and a deadline is built and
// compared.
func TestBuiltPodHasItsTemplatesSpecDigest(t *testing.T) {
	sb := builders.AgentSandbox("team", "pool").PodSpec(func(spec *corev1.PodSpec) {
		spec.InitContainers = []corev1.Container{{Name: "init", Image: "mcr.microsoft.com/windows/nanoserver:ltsc2022"}}
		spec.ActiveDeadlineSeconds = ptr.To[int64](3600)
	}).Obj()
	pod := (&podRecipe{sandbox: sb, templateHash: templateHash(sb), runtimeClass: "hyperv", hostBuilds: []string{"10.0.20348"}}).build()
	want := specDigest(&sb.Spec.Template.Spec)
	if got := pod.Annotations[specDigestAnnotation]; got != want {
		t.Errorf("built pod's %s = %q, want the template's %q", specDigestAnnotation, got, want)
	}
	pod.Labels[agentsv1alpha1.TemplateHashLabel] = templateHash(sb)
	cached, _ := trimPod(pod)
	if why := newTamperCheck(sb, templateHash(sb)).problem(cached.(*corev1.Pod)); why != "" {
		t.Errorf("a pod built from the current template counts as tampered: %s", why)
	}
}
