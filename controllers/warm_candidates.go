package controllers

import (
	"container/heap"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/indexheap"
	"github.com/hyperpool/hyperpool/internal/podstate"
)

// warmCandidates is, per class, the Ready warm pods a bind can take, and per class and node
// the class's live bound pods, kept from the pod informer's events. With it a bind picks
// its pod in O(nodes + log n) instead of listing and copying the class's whole pool
// (~1,000 pods in the full burst: half the manager's CPU there, docs/performance.md).
//
// It is an ordering hint, never the lock: a bind re-reads the pod it is handed from the
// cache, checks it again, goes through Claims, and writes it with the resourceVersion the
// cache showed, as before. A taken candidate leaves the set until its bind is seen (the
// pod labelled) or given back (release), so concurrent workers are handed different pods.
//
// Lost on restart: nothing. The informer's first list replays every pod as an add.
type warmCandidates struct {
	mu      sync.Mutex
	classes map[types.NamespacedName]*classCandidates // by namespace and class name
	pods    map[types.NamespacedName]*podEntry        // what each pod of a class counts as
}

// classCandidates is one class's candidates and load, by node.
type classCandidates struct {
	nodes map[string]*nodeCandidates
}

// nodeCandidates is one class's candidates on one node, by template hash (oldest first),
// and how many of its sessions the node runs.
type nodeCandidates struct {
	bound  int
	byHash map[string]*candidateHeap
}

// podEntry is what the set last saw of a pod.
type podEntry struct {
	key       types.NamespacedName
	class     types.NamespacedName
	node      string
	hash      string
	owner     types.UID // the controller: the class a warm pod belongs to
	created   time.Time
	candidate bool // Ready, warm, live: in a heap unless taken
	bound     bool // counted in its node's bound
	taken     bool // handed to a bind, not yet seen bound or given back
	index     int  // in its heap; -1 when in none
}

func newWarmCandidates() *warmCandidates {
	return &warmCandidates{classes: map[types.NamespacedName]*classCandidates{}, pods: map[types.NamespacedName]*podEntry{}}
}

// handler feeds the set from the pod informer.
func (w *warmCandidates) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observe(obj) },
		UpdateFunc: func(_, obj any) { w.observe(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				w.remove(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
			}
		},
	}
}

func (w *warmCandidates) observe(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	w.update(pod)
}

// update records the pod's current state: a candidate when it is a class's Ready, live,
// unbound pod on a node; bound load when it holds a session on a node.
func (w *warmCandidates) update(pod *corev1.Pod) {
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	sandbox, session := pod.Labels[agentsv1alpha1.ClassLabel], pod.Labels[agentsv1alpha1.SessionLabel]
	live := pod.DeletionTimestamp.IsZero() && pod.Spec.NodeName != ""
	var owner types.UID
	if ref := metav1.GetControllerOf(pod); ref != nil {
		owner = ref.UID
	}
	next := &podEntry{key: key, class: types.NamespacedName{Namespace: pod.Namespace, Name: sandbox}, node: pod.Spec.NodeName,
		hash: pod.Labels[agentsv1alpha1.TemplateHashLabel], owner: owner, created: pod.CreationTimestamp.Time, index: -1,
		candidate: sandbox != "" && session == "" && live && podstate.Ready(pod),
		bound:     sandbox != "" && session != "" && live}
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.pods[key]
	if prev != nil {
		next.taken = prev.taken && next.candidate // seen bound (or gone bad): no longer taken
		w.unlink(prev)
	}
	if !next.candidate && !next.bound {
		delete(w.pods, key)
		return
	}
	w.pods[key] = next
	w.link(next)
}

func (w *warmCandidates) remove(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.pods[key]; e != nil {
		w.unlink(e)
		delete(w.pods, key)
	}
}

// link adds e to its node's count or heap. Called with w locked.
func (w *warmCandidates) link(e *podEntry) {
	n := w.node(e.class, e.node, true)
	if e.bound {
		n.bound++
	}
	if e.candidate && !e.taken {
		h := n.byHash[e.hash]
		if h == nil {
			h = &candidateHeap{}
			n.byHash[e.hash] = h
		}
		heap.Push(h, e)
	}
}

// unlink takes e out of its node's count and heap, dropping what is left empty. Called
// with w locked.
func (w *warmCandidates) unlink(e *podEntry) {
	c := w.classes[e.class]
	if c == nil {
		return
	}
	n := c.nodes[e.node]
	if n == nil {
		return
	}
	if e.bound {
		n.bound--
	}
	if h := n.byHash[e.hash]; h != nil && e.index >= 0 {
		heap.Remove(h, e.index)
		if h.Len() == 0 {
			delete(n.byHash, e.hash)
		}
	}
	if n.bound == 0 && len(n.byHash) == 0 {
		delete(c.nodes, e.node)
		if len(c.nodes) == 0 {
			delete(w.classes, e.class)
		}
	}
}

func (w *warmCandidates) node(class types.NamespacedName, node string, create bool) *nodeCandidates {
	c := w.classes[class]
	if c == nil {
		if !create {
			return nil
		}
		c = &classCandidates{nodes: map[string]*nodeCandidates{}}
		w.classes[class] = c
	}
	n := c.nodes[node]
	if n == nil && create {
		n = &nodeCandidates{byHash: map[string]*candidateHeap{}}
		c.nodes[node] = n
	}
	return n
}

// take hands out the class's best candidate in bindOrder (fewest sessions of the class on
// its node, then the template the update strategy prefers, then the oldest) and keeps it
// from every other take until it is seen bound or given back with release. Only pods
// controlled by the class's UID are handed out. ok is false when the class has none.
func (w *warmCandidates) take(class types.NamespacedName, owner types.UID, hash string, preferOld bool) (types.NamespacedName, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.classes[class]
	if c == nil {
		return types.NamespacedName{}, false
	}
	var best *podEntry
	var bestRank rankedPod
	for _, n := range c.nodes {
		for h, hp := range n.byHash {
			e := firstOf(*hp, owner)
			if e == nil {
				continue
			}
			old := h != hash
			r := rankedPod{load: n.bound, preferred: old == preferOld, created: e.created}
			if best == nil || candidateBefore(r, e, bestRank, best) {
				best, bestRank = e, r
			}
		}
	}
	if best == nil {
		return types.NamespacedName{}, false
	}
	heap.Remove(c.nodes[best.node].byHash[best.hash], best.index)
	if h := c.nodes[best.node].byHash[best.hash]; h.Len() == 0 {
		delete(c.nodes[best.node].byHash, best.hash)
	}
	best.taken = true
	return best.key, true
}

// candidateBefore orders two candidates by bindOrder, then by name so that the order is
// the same on every run (creation times have whole seconds).
func candidateBefore(ra rankedPod, a *podEntry, rb rankedPod, b *podEntry) bool {
	if c := bindOrder(ra, rb); c != 0 {
		return c < 0
	}
	return a.key.Name < b.key.Name
}

// release gives back a pod a bind took but did not bind: it is a candidate again if the set
// still sees it as one.
func (w *warmCandidates) release(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.pods[key]
	if e == nil || !e.taken {
		return
	}
	e.taken = false
	if e.candidate {
		n := w.node(e.class, e.node, true)
		h := n.byHash[e.hash]
		if h == nil {
			h = &candidateHeap{}
			n.byHash[e.hash] = h
		}
		heap.Push(h, e)
	}
}

// candidateHeap holds one class's candidates of one template on one node, oldest first
// (then by name).
type candidateHeap = indexheap.Heap[*podEntry]

// HeapLess orders the candidates of a candidateHeap.
func (e *podEntry) HeapLess(o *podEntry) bool {
	if c := e.created.Compare(o.created); c != 0 {
		return c < 0
	}
	return e.key.Name < o.key.Name
}

// SetHeapIndex records e's place in its candidateHeap.
func (e *podEntry) SetHeapIndex(i int) { e.index = i }

// firstOf is the oldest candidate controlled by owner. It is the head but for pods left by
// an earlier class of the same name (deleted and created again), which the garbage
// collector is removing: those are skipped, in heap order.
func firstOf(h candidateHeap, owner types.UID) *podEntry {
	if len(h) == 0 {
		return nil
	}
	if h[0].owner == owner {
		return h[0]
	}
	var best *podEntry
	for _, e := range h {
		if e.owner == owner && (best == nil || e.created.Before(best.created) || (e.created.Equal(best.created) && e.key.Name < best.key.Name)) {
			best = e
		}
	}
	return best
}
