package poolbook

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Diff compares the book with pods, a List of every pod (from the cache or the API server),
// and returns each difference found, each starting "class NAMESPACE/NAME: ": a pod one shows and the other does not, a pod the two
// see differently, a class whose counts differ. None means the book is what a fresh List
// would give. The book is fed by events, so compare it when the cache has settled.
func (b *Book) Diff(pods []corev1.Pod) []string {
	return b.diff(pods, func(string) bool { return true })
}

// DiffNamespace is Diff for one namespace: pods is a List of that namespace's pods, and
// the book's other namespaces are not compared.
func (b *Book) DiffNamespace(ns string, pods []corev1.Pod) []string {
	return b.diff(pods, func(n string) bool { return n == ns })
}

func (b *Book) diff(pods []corev1.Pod, compared func(namespace string) bool) []string {
	fresh := New()
	for i := range pods {
		fresh.Update(&pods[i])
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var diffs []string
	for key, e := range fresh.pods {
		mine, ok := b.pods[key]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("class %s: pod %s is listed but not in the book", classKey(e.Pod), key.Name))
		case mine.ResourceV != e.ResourceV:
			diffs = append(diffs, fmt.Sprintf("class %s: pod %s: the book has resourceVersion %s, the list %s", classKey(e.Pod), key.Name, mine.ResourceV, e.ResourceV))
		case !reflect.DeepEqual(*mine.Pod, *e.Pod):
			diffs = append(diffs, fmt.Sprintf("class %s: pod %s: the book has %+v, the list %+v", classKey(e.Pod), key.Name, *mine.Pod, *e.Pod))
		}
	}
	for key, e := range b.pods {
		if _, ok := fresh.pods[key]; !ok && compared(key.Namespace) {
			diffs = append(diffs, fmt.Sprintf("class %s: pod %s is in the book but not listed", classKey(e.Pod), key.Name))
		}
	}
	// The sums are kept one event at a time; summed afresh, they must agree.
	for ns, classes := range fresh.namespaces {
		for name, c := range classes {
			key := types.NamespacedName{Namespace: ns, Name: name}
			mine := b.class(key, false)
			if mine == nil {
				diffs = append(diffs, fmt.Sprintf("class %s: it has pods but no sums in the book", key))
				continue
			}
			if got, want := mine.summary(), c.summary(); !reflect.DeepEqual(got, want) {
				diffs = append(diffs, fmt.Sprintf("class %s: the book sums %+v, the list %+v", key, got, want))
			}
		}
	}
	for ns, classes := range b.namespaces {
		if !compared(ns) {
			continue
		}
		for name := range classes {
			if fresh.class(types.NamespacedName{Namespace: ns, Name: name}, false) == nil {
				diffs = append(diffs, fmt.Sprintf("class %s/%s: it has sums in the book but no pods listed", ns, name))
			}
		}
	}
	slices.Sort(diffs)
	return diffs
}

// classSummary is a class's sums in a comparable form.
type classSummary struct {
	Unbound     map[types.UID]tally
	Bound, Live tally
	Terminating []types.NamespacedName
	NotReady    map[types.UID][]types.NamespacedName
	Nodes       map[types.UID]map[string]int
	Holders     map[Holder]int
}

func (c *classPods) summary() classSummary {
	s := classSummary{Unbound: map[types.UID]tally{}, Bound: c.bound.normal(), Live: c.live.normal(),
		NotReady: map[types.UID][]types.NamespacedName{}, Nodes: map[types.UID]map[string]int{}, Holders: c.holders}
	less := func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) }
	for uid, u := range c.unbound {
		s.Unbound[uid] = u.normal()
		s.Nodes[uid] = u.nodes
		var notReady []types.NamespacedName
		for _, e := range u.notReady {
			notReady = append(notReady, e.Key)
		}
		slices.SortFunc(notReady, less)
		s.NotReady[uid] = notReady
	}
	for key := range c.terminating {
		s.Terminating = append(s.Terminating, key)
	}
	slices.SortFunc(s.Terminating, less)
	return s
}

// normal is t with its emptied maps as nil: a tally that had pods and lost them equals one
// that never had any.
func (t tally) normal() tally {
	out := tally{n: t.n, ready: t.ready, terminated: t.terminated}
	for hash, h := range t.hashes {
		if out.hashes == nil {
			out.hashes = map[string]*hashTally{}
		}
		hc := *h
		if len(hc.unrecorded) == 0 {
			hc.unrecorded = nil
		}
		out.hashes[hash] = &hc
	}
	return out
}
