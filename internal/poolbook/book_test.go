package poolbook

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

const ns = "team"

var (
	classUID = types.UID("class-uid")
	shape    = &Shape{Hash: "new", Footprint: agentsv1alpha1.Footprint{Memory: resource.MustParse("2Gi"), VCPUs: 2}}
	epoch    = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
)

// podState is one way a sandbox pod can be, as the tests make it.
type podState struct {
	class, session, hash, node string
	owner                      types.UID
	ownerKind                  string
	ready, ended, deleting     bool
	grace                      int64 // deletion grace, when deleting
	recordedGi                 int   // a recorded footprint in GiB, 0 for none
	createdSec                 int
}

func makePod(name string, s podState, rv int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: fmt.Sprint(rv),
		CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(s.createdSec) * time.Second)),
		Labels:            map[string]string{}, Annotations: map[string]string{}}}
	if s.class != "" {
		p.Labels[agentsv1alpha1.ClassLabel] = s.class
	}
	if s.session != "" {
		p.Labels[agentsv1alpha1.SessionLabel] = s.session
	}
	p.Labels[agentsv1alpha1.TemplateHashLabel] = s.hash
	if s.owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: s.ownerKind, Name: "x", UID: s.owner, Controller: ptr.To(true)}}
	}
	p.Spec.NodeName = s.node
	p.Status.Phase = corev1.PodRunning
	if s.ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	if s.ended {
		p.Status.Phase = corev1.PodFailed
	}
	if s.deleting {
		p.DeletionTimestamp = ptr.To(metav1.NewTime(epoch))
		p.DeletionGracePeriodSeconds = ptr.To(s.grace)
	}
	if s.recordedGi > 0 {
		p.Annotations[uvm.FootprintAnnotation] = fmt.Sprintf(`{"memory":"%dGi","vcpus":1}`, s.recordedGi)
	}
	return p
}

func randomState(r *rand.Rand) podState {
	s := podState{class: []string{"pool", "pool", "pool", "other", ""}[r.IntN(5)],
		hash: []string{"new", "new", "old"}[r.IntN(3)], node: []string{"", "n1", "n2"}[r.IntN(3)],
		ready: r.IntN(2) == 0, ended: r.IntN(8) == 0, deleting: r.IntN(6) == 0, grace: int64(r.IntN(60)),
		recordedGi: []int{0, 0, 1, 4}[r.IntN(4)], createdSec: r.IntN(100)}
	switch r.IntN(4) {
	case 0, 1:
		s.owner, s.ownerKind = classUID, "AgentSandbox"
	case 2:
		s.session, s.owner, s.ownerKind = fmt.Sprint("s", r.IntN(5)), types.UID(fmt.Sprint("sess-", r.IntN(5))), "AgentSession"
	default:
		s.owner, s.ownerKind = "someone-else", "AgentSandbox"
	}
	return s
}

// naivePool counts class "pool" the way the pool controller did before the book: from a
// list of every pod.
func naivePool(pods map[string]*corev1.Pod, graceSeconds int64) Pool {
	var p Pool
	var total, warmSum footprintSum
	nodes := map[string]bool{}
	for _, pod := range pods {
		b := PodOf(pod)
		if b.Class != "pool" {
			continue
		}
		switch {
		case b.Deleting:
			p.Terminating++
			if b.Session == "" {
				p.UnboundTerminating++
			}
			allowed := graceSeconds
			if b.OwnGrace >= 0 {
				allowed = min(allowed, b.OwnGrace)
			}
			p.GraceExceeded = p.GraceExceeded || b.GraceAsked > allowed
		case b.Session != "":
			p.Bound++
			total.add(b.Footprint(shape), 1)
		case b.controlled && b.Controller == classUID:
			p.Warm++
			if b.Ready {
				p.WarmReady++
			}
			if b.Terminated {
				p.WarmEnded++
			}
			if b.Hash != shape.Hash {
				p.OldTemplate++
			}
			if !b.Ready && !b.Terminated && (p.OldestNotReady.IsZero() || b.Created.Before(p.OldestNotReady)) {
				p.OldestNotReady = b.Created
			}
			if b.Node != "" {
				nodes[b.Node] = true
			}
			total.add(b.Footprint(shape), 1)
			warmSum.add(b.Footprint(shape), 1)
		default:
			p.Strays++
		}
	}
	for n := range nodes {
		p.WarmNodes = append(p.WarmNodes, n)
	}
	p.Footprint, p.WarmMemory = total.Footprint(), warmSum.memory
	return p
}

// Whatever order pods come, change and go in, the book's sums are what a fresh count of
// the pods gives, and Diff finds nothing; a book that missed an event is caught by Diff.
func TestBookAgreesWithAFreshCount(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed))
			book := New()
			pods := map[string]*corev1.Pod{}
			for step := range 400 {
				name := fmt.Sprint("pod-", r.IntN(30))
				if _, ok := pods[name]; ok && r.IntN(5) == 0 {
					delete(pods, name)
					book.Remove(types.NamespacedName{Namespace: ns, Name: name})
				} else {
					pods[name] = makePod(name, randomState(r), step)
					book.Update(pods[name])
				}
				got, want := book.Pool(types.NamespacedName{Namespace: ns, Name: "pool"}, classUID, shape, 30), naivePool(pods, 30)
				if want.WarmNodes == nil {
					want.WarmNodes = got.WarmNodes[:0:0]
				}
				slices.Sort(want.WarmNodes)
				if !equalPools(got, want) {
					t.Fatalf("step %d: book counts %+v, a fresh count %+v", step, got, want)
				}
				if got, want := book.Namespace(ns, shapes), naiveNamespace(pods); !equalNamespaces(got, want) {
					t.Fatalf("step %d: book charges the namespace %+v, a fresh count %+v", step, got, want)
				}
			}
			list := make([]corev1.Pod, 0, len(pods))
			for _, p := range pods {
				list = append(list, *p)
			}
			if diffs := book.Diff(list); len(diffs) > 0 {
				t.Fatalf("Diff after a replay: %v", diffs)
			}
			// A missed update and a missed delete are both drift.
			for name, p := range pods {
				if p.Labels[agentsv1alpha1.ClassLabel] == "" {
					continue // none of the book's
				}
				stale := p.DeepCopy()
				stale.ResourceVersion = "999999"
				list = append(list, *makePod("never-seen", podState{class: "pool", hash: "new"}, 1))
				for i := range list {
					if list[i].Name == name {
						list[i] = *stale
					}
				}
				diffs := strings.Join(book.Diff(list), "\n")
				for _, want := range []string{"class team/pool: pod never-seen is listed but not in the book", "class team/pool: the book sums",
					fmt.Sprintf("pod %s: the book has resourceVersion", name)} {
					if !strings.Contains(diffs, want) {
						t.Errorf("Diff with one pod changed and one added behind the book's back does not say %q:\n%s", want, diffs)
					}
				}
				break
			}
		})
	}
}

// shapes: class "pool" exists, "other" is gone.
func shapes(class string) *Shape {
	if class == "pool" {
		return shape
	}
	return nil
}

// naiveNamespace charges the namespace the way the quota did before the book: from a list.
func naiveNamespace(pods map[string]*corev1.Pod) Namespace {
	out := Namespace{WarmByClass: map[string]int{}, Holders: map[Holder]bool{}}
	var total footprintSum
	for _, pod := range pods {
		p := PodOf(pod)
		if p.Class == "" || p.Terminated {
			continue
		}
		total.add(p.Footprint(shapes(p.Class)), 1)
		if p.Warm() {
			out.Warm++
			out.WarmByClass[p.Class]++
		}
		if h, ok := holderOf(p); ok {
			out.Holders[h] = true
		}
	}
	out.Footprint = total.Footprint()
	return out
}

func equalNamespaces(a, b Namespace) bool {
	if a.Footprint.Memory.Cmp(b.Footprint.Memory) != 0 || a.Footprint.VCPUs != b.Footprint.VCPUs {
		return false
	}
	a.Footprint, b.Footprint = agentsv1alpha1.Footprint{}, agentsv1alpha1.Footprint{}
	return reflect.DeepEqual(a, b)
}

// equalPools compares footprints by value (a Quantity caches its string form).
func equalPools(a, b Pool) bool {
	if a.Footprint.Memory.Cmp(b.Footprint.Memory) != 0 || a.Footprint.VCPUs != b.Footprint.VCPUs {
		return false
	}
	a.Footprint, b.Footprint = agentsv1alpha1.Footprint{}, agentsv1alpha1.Footprint{}
	return reflect.DeepEqual(a, b)
}
