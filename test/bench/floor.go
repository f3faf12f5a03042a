//go:build !windows

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/internal/uvm"
	"github.com/hyperpool/hyperpool/test/builders"
)

// The design floor (issue 18): a warm bind is three writes in a row (the client's
// AgentSession create, the bind's pod patch, the session's status patch) and a watch. The
// benchmark issues the same three writes itself, back to back, on objects of the same
// shape, with no manager involved, and watches the result as it watches a bind. A bind
// cannot be faster than that on the same API server at the same moment, so bind latency ÷
// design floor is what the manager adds on top of its own design.
//
// "The same shape" without the manager acting on them:
//   - the sessions are of a copy of the AgentSession CRD in group floors.hyperpool.io
//     (same schema, same CEL rules, same length of group name), which the manager does
//     not watch;
//   - the pod is a copy of one of the pool's warm pods (spec, annotations, labels, owner)
//     whose hyperpool label keys are renamed to floors.hyperpool.io/..., the same length,
//     so the manager's cache (hyperpool's pods only) never sees it;
//   - the pod patch sets the session label and the session as controller owner with the
//     resourceVersion the benchmark's cache showed, as claimWarmPod does, and the status
//     patch carries what the manager writes on a warm bind (phase Ready, pod, node, IP,
//     start type, bound/ready/expiry times, footprint, Ready condition).

// floorGroup is the design floor's copy of the agents.hyperpool.io API group: the same
// length, so names, keys and owner references are as long as the real ones.
const floorGroup = "floors.hyperpool.io"

var floorSessionGVK = schema.GroupVersionKind{Group: floorGroup, Version: agentsv1alpha1.GroupVersion.Version, Kind: "AgentSession"}

// floorKey renames a hyperpool label or annotation key to the floor's group.
func floorKey(k string) string {
	if rest, ok := strings.CutPrefix(k, agentsv1alpha1.GroupVersion.Group+"/"); ok {
		return floorGroup + "/" + rest
	}
	return k
}

// FloorSample is one design-floor round trip, in ms from the create call's start.
type FloorSample struct {
	Create    float64 `json:"createMs"`   // the AgentSession create call
	PodPatch  float64 `json:"podPatchMs"` // the pod patch call (with its conflicts' retries)
	Status    float64 `json:"statusMs"`   // the status patch call
	Watch     float64 `json:"watchMs"`    // status patch returned -> the watch sees Ready
	Total     float64 `json:"totalMs"`    // create call started -> the watch sees Ready
	Conflicts int     `json:"conflicts"`  // pod patches refused on the resourceVersion
	// CPU is what each process spent while the sample ran, and Duration how long that was
	// (ms): a floor's cost, told apart from a bind's.
	CPU      cpuTimes `json:"-"`
	Duration float64  `json:"durationMs"`
	At       float64  `json:"atMs"` // since the window opened
}

// designFloor is a scenario's floor pod and its samples.
type designFloor struct {
	mu      sync.Mutex
	pod     types.NamespacedName
	model   *corev1.Pod // the warm pod the floor pod copies
	last    *corev1.Pod // the floor pod as the last patch returned it
	samples []FloorSample
	next    int
	// podPatches counts every pod patch sent (conflicts too): the API server counts them
	// as PATCH pods, which the bind's write counts must not include.
	podPatches int
}

// installFloorCRD creates the floor's copy of the AgentSession CRD (once per harness) and
// starts the benchmark's watch of it.
func (h *Harness) installFloorCRD(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.floorReady {
		return nil
	}
	crdGVK := schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}
	src := &unstructured.Unstructured{}
	src.SetGroupVersionKind(crdGVK)
	if err := h.Client.Get(ctx, client.ObjectKey{Name: "agentsessions." + agentsv1alpha1.GroupVersion.Group}, src); err != nil {
		return fmt.Errorf("design floor: reading the AgentSession CRD: %w", err)
	}
	name := "agentsessions." + floorGroup
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": name},
		"spec":     src.Object["spec"],
	}}
	if err := unstructured.SetNestedField(crd.Object, floorGroup, "spec", "group"); err != nil {
		return err
	}
	if err := h.Client.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("design floor: creating CRD %s: %w", name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(crdGVK)
		if err := h.Client.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("design floor: CRD %s not established: %w", name, err)
	}
	probe := &unstructured.Unstructured{}
	probe.SetGroupVersionKind(floorSessionGVK)
	// The cache's REST mapper learns the new kind on its first miss; retry until it does.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		inf, err := h.cache.GetInformer(h.cacheCtx, probe, cache.BlockUntilSynced(true))
		if err != nil {
			return false, nil
		}
		_, err = inf.AddEventHandler(h.track.handler())
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("design floor: watching %s: %w", floorSessionGVK, err)
	}
	h.floorReady = true
	return nil
}

// prepareDesignFloor installs the floor CRD and creates the scenario's floor pod: a copy of
// one of the pool's warm pods, hidden from the manager, on the same node, Ready.
func (r *run) prepareDesignFloor(ctx context.Context) error {
	if err := r.h.installFloorCRD(ctx); err != nil {
		return err
	}
	pods := &corev1.PodList{}
	if err := r.h.Client.List(ctx, pods, client.InNamespace(r.ns), client.MatchingLabels{agentsv1alpha1.ClassLabel: poolName}); err != nil {
		return err
	}
	var model *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if podstate.Ready(p) && p.Labels[agentsv1alpha1.SessionLabel] == "" && p.DeletionTimestamp.IsZero() {
			model = p
			break
		}
	}
	if model == nil {
		return fmt.Errorf("design floor: no Ready warm pod in %s to copy", r.ns)
	}
	r.sizes.WarmPod, r.sizes.WarmPodManagedFields = objectBytes(model)
	pod := floorPodFrom(model)
	if err := r.h.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("design floor: creating the floor pod: %w", err)
	}
	key := client.ObjectKeyFromObject(pod)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &corev1.Pod{}
		return r.h.cache.Get(ctx, key, got) == nil && podstate.Ready(got), nil
	})
	if err != nil {
		return fmt.Errorf("design floor: pod %s not Ready: %w", key, err)
	}
	r.design = &designFloor{pod: key, model: model}
	// One round trip not counted: the API server's first write of a kind it has just
	// learned (the floor's CRD) builds its handler and takes seconds, nothing a bind meets.
	if _, err := r.designRoundTrip(ctx); err != nil {
		return fmt.Errorf("design floor: warm-up: %w", err)
	}
	r.design.podPatches = 0 // before the window: not in its write counts
	return nil
}

// floorPodFrom is a copy of a warm pod that the manager does not see: its hyperpool label
// and annotation keys renamed to the floor's group, of the same length.
func floorPodFrom(model *corev1.Pod) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: model.Namespace, GenerateName: model.GenerateName,
		Labels: map[string]string{}, Annotations: map[string]string{}, OwnerReferences: model.OwnerReferences}, Spec: model.Spec}
	for k, v := range model.Labels {
		pod.Labels[floorKey(k)] = v
	}
	for k, v := range model.Annotations {
		pod.Annotations[floorKey(k)] = v
	}
	return pod
}

// designRoundTrip issues a bind's three writes itself and waits until the watch sees the
// floor session Ready.
func (r *run) designRoundTrip(ctx context.Context) (FloorSample, error) {
	d := r.design
	d.mu.Lock()
	defer d.mu.Unlock()
	name := fmt.Sprintf("f-%05d", d.next) // as long as the scenarios' session names
	d.next++
	fs := FloorSample{}
	start := time.Now()
	s, err := r.floorCreate(ctx, name)
	if err != nil {
		return fs, err
	}
	t1 := time.Now()
	pod, conflicts, err := r.floorPodPatch(ctx, s)
	fs.Conflicts = conflicts
	if err != nil {
		return fs, err
	}
	t2 := time.Now()
	if err := r.floorStatus(ctx, s, pod); err != nil {
		return fs, err
	}
	t3 := time.Now()

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	k := key(r.ns, name)
	var seen time.Time
	if err := r.h.track.WaitUntil(wctx, func() bool { seen = r.h.track.floors[k]; return !seen.IsZero() }); err != nil {
		return fs, fmt.Errorf("design floor: %s not seen Ready: %w", name, err)
	}
	fs.Create, fs.PodPatch, fs.Status = ms(t1.Sub(start)), ms(t2.Sub(t1)), ms(t3.Sub(t2))
	fs.Watch, fs.Total = ms(seen.Sub(t3)), ms(seen.Sub(start))
	return fs, nil
}

// floorCreate is the client's write: a floor session as the scenarios create theirs.
func (r *run) floorCreate(ctx context.Context, name string) (*unstructured.Unstructured, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(builders.AgentSession(r.ns, name, poolName).Obj())
	if err != nil {
		return nil, err
	}
	s := &unstructured.Unstructured{Object: obj}
	s.SetGroupVersionKind(floorSessionGVK)
	delete(s.Object, "status")
	if err := r.h.Client.Create(ctx, s); err != nil {
		return nil, fmt.Errorf("design floor: create %s: %w", name, err)
	}
	return s, nil
}

// floorPodPatch is the bind's first write, as claimWarmPod makes it: the session label and
// the session as controller owner, a merge patch with the resourceVersion the cache showed
// (again on a conflict, as a bind tries again). Called with r.design locked.
func (r *run) floorPodPatch(ctx context.Context, s *unstructured.Unstructured) (*corev1.Pod, int, error) {
	d := r.design
	conflicts := 0
	for {
		// The floor pod's last version is the one the previous patch returned (only the
		// benchmark writes it once kwok has run it): what an up-to-date cache shows a bind.
		cur := d.last
		if cur == nil {
			cur = &corev1.Pod{}
			if err := r.h.Client.Get(ctx, d.pod, cur); err != nil {
				return nil, conflicts, fmt.Errorf("design floor: pod %s: %w", d.pod, err)
			}
		}
		pod := cur.DeepCopy()
		pod.Labels[floorKey(agentsv1alpha1.SessionLabel)] = s.GetName()
		pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(s, floorSessionGVK)}
		d.podPatches++
		err := r.h.Client.Patch(ctx, pod, client.MergeFromWithOptions(cur, client.MergeFromWithOptimisticLock{}))
		if err == nil {
			d.last = pod
			return pod, conflicts, nil
		}
		d.last = nil // read it again
		if !apierrors.IsConflict(err) || conflicts >= 5 {
			return nil, conflicts, fmt.Errorf("design floor: patch pod %s: %w", d.pod, err)
		}
		conflicts++ // changed by someone else (kwok's status): as a bind, try again
	}
}

// floorStatus is the bind's second write, as writeStatus makes it on a warm bind: a merge
// patch of everything the bind set, without a resourceVersion.
func (r *run) floorStatus(ctx context.Context, s *unstructured.Unstructured, pod *corev1.Pod) error {
	now := time.Now()
	preciseBound, preciseExpiry := metav1.NewMicroTime(now), metav1.NewMicroTime(now.Add(time.Hour))
	bound, ready, expiry := metav1.NewTime(now.Truncate(time.Second)), metav1.NewTime(now), metav1.NewTime(now.Add(time.Hour).Truncate(time.Second))
	fp := uvm.FootprintFromPod(pod)
	st := agentsv1alpha1.AgentSessionStatus{Phase: agentsv1alpha1.SessionReady, PodName: pod.Name, NodeName: pod.Spec.NodeName,
		PodIP: pod.Status.PodIP, StartType: agentsv1alpha1.StartWarm, BoundTime: &bound, ReadyTime: &ready, ExpiryTime: &expiry,
		PreciseBoundTime: &preciseBound, PreciseExpiryTime: &preciseExpiry, Footprint: &fp}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: agentsv1alpha1.SessionReadyCondition, Status: metav1.ConditionTrue,
		Reason: agentsv1alpha1.ReasonBound, ObservedGeneration: s.GetGeneration(),
		Message: fmt.Sprintf("%s start: sandbox pod %s on node %s is Ready", st.StartType, st.PodName, st.NodeName)})
	body, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	if err := r.h.Client.Status().Patch(ctx, s, client.RawPatch(types.MergePatchType, body)); err != nil {
		return fmt.Errorf("design floor: status of %s: %w", s.GetName(), err)
	}
	return nil
}

// designSample takes one design-floor sample and records it, with the CPU the control
// plane and the manager spent during it (to tell a floor's cost from a bind's).
func (r *run) designSample(ctx context.Context) {
	if r.design == nil {
		return
	}
	before := r.procs.read()
	t0 := time.Now()
	fs, err := r.designRoundTrip(ctx)
	fs.Duration = ms(time.Since(t0))
	fs.CPU = r.procs.read().sub(before)
	if !r.began.IsZero() {
		fs.At = ms(t0.Sub(r.began))
	}
	if err != nil {
		if ctx.Err() == nil {
			r.h.logf("%v", err)
		}
		return
	}
	r.design.mu.Lock()
	r.design.samples = append(r.design.samples, fs)
	r.design.mu.Unlock()
}

// ObjectSizes are the JSON sizes, in bytes, of the objects a bind writes, as the API server
// stores and serves them: what every write of them decodes, converts and encodes.
type ObjectSizes struct {
	WarmPod                   int `json:"warmPod"`
	WarmPodManagedFields      int `json:"warmPodManagedFields"`
	BoundPod                  int `json:"boundPod"`
	BoundPodManagedFields     int `json:"boundPodManagedFields"`
	ReadySession              int `json:"readySession"`
	ReadySessionManagedFields int `json:"readySessionManagedFields"`
}

// objectBytes is obj's JSON size and its managed fields' share of it.
func objectBytes(obj client.Object) (total, managed int) {
	b, err := json.Marshal(obj)
	if err != nil {
		return 0, 0
	}
	m, err := json.Marshal(obj.GetManagedFields())
	if err != nil {
		return len(b), 0
	}
	return len(b), len(m)
}

// measureBound fills the sizes of the scenario's first Ready session and its pod.
func (r *run) measureBound(ctx context.Context) {
	for _, name := range r.order {
		s := &agentsv1alpha1.AgentSession{}
		if err := r.h.Client.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: name}, s); err != nil || s.Status.PodName == "" || s.Status.Phase != agentsv1alpha1.SessionReady {
			continue
		}
		pod := &corev1.Pod{}
		if err := r.h.Client.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: s.Status.PodName}, pod); err != nil {
			continue
		}
		r.sizes.ReadySession, r.sizes.ReadySessionManagedFields = objectBytes(s)
		r.sizes.BoundPod, r.sizes.BoundPodManagedFields = objectBytes(pod)
		return
	}
}

// floorObserved records when the watch first saw a floor session Ready with a pod. Called
// with t locked.
func (t *tracker) floorObserved(u *unstructured.Unstructured, now time.Time) bool {
	if u.GroupVersionKind() != floorSessionGVK {
		return false
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	pod, _, _ := unstructured.NestedString(u.Object, "status", "podName")
	k := key(u.GetNamespace(), u.GetName())
	if _, ok := t.floors[k]; !ok && phase == string(agentsv1alpha1.SessionReady) && pod != "" {
		t.floors[k] = now
	}
	return true
}
