package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// TestWarmCandidates drives the set with pod events and checks what a run of takes hands
// out, in order: only Ready, live, unbound pods of the class's own UID, never one twice,
// in bindOrder.
func TestWarmCandidates(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	sb := builders.AgentSandbox("ns", "pool").Obj()
	sb.UID = "class-uid"
	other := builders.AgentSandbox("ns", "pool").Obj()
	other.UID = "an-earlier-class-of-the-same-name"
	const hash, oldHash = "new", "old"
	// warm is a Ready warm pod of the class on node, created at t0+age, of template h.
	warm := func(name, node string, age time.Duration, h string) *builders.PodWrapper {
		p := builders.Pod("ns", name).Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.TemplateHashLabel, h).
			OwnedBy(sb).Node(node).Ready()
		p.CreationTimestamp.Time = t0.Add(age)
		return p
	}
	bound := func(name, node string) *corev1.Pod {
		return builders.Pod("ns", name).Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.SessionLabel, "s-"+name).Node(node).Ready().Obj()
	}
	type event struct {
		op  string // add, update, delete, tombstone, release
		pod *corev1.Pod
	}
	add := func(p *corev1.Pod) event { return event{"add", p} }
	tests := []struct {
		name      string
		events    []event
		preferOld bool
		want      []string // the takes' pods in order, until the set has none
	}{
		{"oldest first on one node",
			[]event{add(warm("b", "n1", 2*time.Second, hash).Obj()), add(warm("a", "n1", time.Second, hash).Obj()), add(warm("c", "n1", 3*time.Second, hash).Obj())},
			false, []string{"a", "b", "c"}},
		{"same creation second: by name",
			[]event{add(warm("y", "n1", 0, hash).Obj()), add(warm("x", "n1", 0, hash).Obj())},
			false, []string{"x", "y"}},
		{"the node with fewer sessions of the class first, whatever the age",
			[]event{add(warm("old-on-busy", "n1", 0, hash).Obj()), add(bound("s1", "n1")), add(warm("young-on-quiet", "n2", time.Hour, hash).Obj())},
			false, []string{"young-on-quiet", "old-on-busy"}},
		{"a bound pod deleted frees its node's load",
			[]event{add(warm("old-on-n1", "n1", 0, hash).Obj()), add(bound("s1", "n1")), add(warm("young-on-n2", "n2", time.Hour, hash).Obj()), {"delete", bound("s1", "n1")}},
			false, []string{"old-on-n1", "young-on-n2"}},
		{"OnReplenish: the old template first",
			[]event{add(warm("new-old", "n1", 0, hash).Obj()), add(warm("old-young", "n1", time.Hour, oldHash).Obj())},
			true, []string{"old-young", "new-old"}},
		{"Recreate: the current template first",
			[]event{add(warm("old-old", "n1", 0, oldHash).Obj()), add(warm("new-young", "n1", time.Hour, hash).Obj())},
			false, []string{"new-young", "old-old"}},
		{"not Ready, terminating, unscheduled or bound: never handed out",
			[]event{
				add(builders.Pod("ns", "not-ready").Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Node("n1").Obj()),
				add(warm("terminating", "n1", 0, hash).Terminating(t0).Obj()),
				add(builders.Pod("ns", "unscheduled").Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Ready().Obj()),
				add(bound("bound", "n1")),
				add(warm("ok", "n1", time.Hour, hash).Obj()),
			}, false, []string{"ok"}},
		{"a pod of an earlier class of the same name is skipped",
			[]event{add(builders.Pod("ns", "stale").Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(other).Node("n1").Ready().Obj()), add(warm("mine", "n1", time.Hour, hash).Obj())},
			false, []string{"mine"}},
		{"an update to not Ready takes it out; Ready again puts it back",
			[]event{add(warm("a", "n1", 0, hash).Obj()), add(warm("b", "n1", time.Second, hash).Obj()),
				{"update", builders.Pod("ns", "a").Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Node("n1").Obj()},
				{"update", builders.Pod("ns", "b").Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Node("n1").Obj()},
				{"update", warm("b", "n1", time.Second, hash).Obj()}},
			false, []string{"b"}},
		{"deleted, and deleted through a tombstone: gone",
			[]event{add(warm("a", "n1", 0, hash).Obj()), add(warm("b", "n1", time.Second, hash).Obj()), add(warm("c", "n1", 2*time.Second, hash).Obj()),
				{"delete", warm("a", "n1", 0, hash).Obj()}, {"tombstone", warm("b", "n1", time.Second, hash).Obj()}},
			false, []string{"c"}},
		{"an update to bound (the bind's own patch seen): never handed out again",
			[]event{add(warm("a", "n1", 0, hash).Obj()), add(warm("b", "n2", time.Second, hash).Obj()), {"update", bound("a", "n1")}},
			false, []string{"b"}},
		{"another class's pods are not this class's candidates",
			[]event{add(builders.Pod("ns", "theirs").Label(agentsv1alpha1.ClassLabel, "other").OwnedBy(sb).Node("n1").Ready().Obj()),
				add(builders.Pod("other-ns", "elsewhere").Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Node("n1").Ready().Obj())},
			false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWarmCandidates()
			h := w.handler()
			for _, e := range tt.events {
				e.pod.Status.Phase = corev1.PodRunning // Ready is the condition, when set
				switch e.op {
				case "add":
					h.OnAdd(e.pod, false)
				case "update":
					h.OnUpdate(nil, e.pod)
				case "delete":
					h.OnDelete(e.pod)
				case "tombstone":
					h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "ns/" + e.pod.Name, Obj: e.pod})
				}
			}
			got := takeAll(w, sb, hash, tt.preferOld)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("takes = %v, want %v", got, tt.want)
			}
		})
	}
}

func takeAll(w *warmCandidates, sb *agentsv1alpha1.AgentSandbox, hash string, preferOld bool) []string {
	var got []string
	for len(got) <= len(w.pods) { // more takes than pods: one was handed out twice
		key, ok := w.take(types.NamespacedName{Namespace: sb.Namespace, Name: sb.Name}, sb.UID, hash, preferOld)
		if !ok {
			return got
		}
		got = append(got, key.Name)
	}
	return got
}

// TestWarmCandidatesClaim follows one candidate through a bind: taken (no other take gets
// it, even when its status changes meanwhile), then given back on a failed write (handed
// out again) or seen bound (never again, and counted as its node's load).
func TestWarmCandidatesClaim(t *testing.T) {
	sb := builders.AgentSandbox("ns", "pool").Obj()
	sb.UID = "class-uid"
	class := types.NamespacedName{Namespace: "ns", Name: "pool"}
	warm := func(name, node string) *corev1.Pod {
		p := builders.Pod("ns", name).Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Node(node).Ready().Obj()
		p.Status.Phase = corev1.PodRunning
		return p
	}
	w := newWarmCandidates()
	w.update(warm("a", "n1"))
	w.update(warm("b", "n2"))

	first, _ := w.take(class, sb.UID, "", false) // a: same load and age, first by name
	w.update(warm("a", "n1"))                    // a status update while taken
	second, _ := w.take(class, sb.UID, "", false)
	if first.Name != "a" || second.Name != "b" {
		t.Fatalf("takes = %s, %s; want a, b", first.Name, second.Name)
	}
	if _, ok := w.take(class, sb.UID, "", false); ok {
		t.Fatal("a third pod handed out from a set of two, both taken")
	}
	w.release(second) // b's write failed
	if again, ok := w.take(class, sb.UID, "", false); !ok || again != second {
		t.Fatalf("after release, take = %v %v, want b", again, ok)
	}
	w.release(second)
	bound := warm("a", "n1") // a's bind is seen: bound, on n1
	bound.Labels[agentsv1alpha1.SessionLabel] = "s"
	w.update(bound)
	w.release(first) // a late release of a pod seen bound changes nothing
	w.update(warm("c", "n1"))
	// n1 runs one session now: b on n2 comes before c, and a never again.
	if got := takeAll(w, sb, "", false); fmt.Sprint(got) != "[b c]" {
		t.Errorf("takes = %v, want [b c]", got)
	}
	if n := w.classes[class].nodes["n1"].bound; n != 1 {
		t.Errorf("n1 bound = %d, want 1", n)
	}
}
