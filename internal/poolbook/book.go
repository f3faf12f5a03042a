// Package poolbook keeps what the pool and quota controllers count of sandbox pods, from
// the pod informer's events: per class, its warm, Ready, bound and terminating pods and
// their footprints; per namespace, what its quota charges.
//
// A pool reconcile used to list and sum every pod of its class on each take, and the quota
// every sandbox pod of its namespace on each admission: at a pool of 5,000 that was 70% of
// the manager's CPU (docs/performance.md). The book makes both a lookup. It follows the
// ReplicaSet controller's pattern: the informer's handler keeps the counts and lowers the
// expectations, and the reconciler reads them.
//
// The book is for counting and ordering, never the lock. A pod the pool deletes is still
// listed from the cache and deleted with its resourceVersion as a precondition; a bind still
// writes the pod with the resourceVersion the cache showed. What a restart loses: nothing.
// The informer's first list replays every pod as an add. Drift from the cache is checked by
// Diff, after every integration and chaos scenario and, in production, by a rare audit.
package poolbook

import (
	"container/heap"
	"math"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/indexheap"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// Book is every sandbox pod the informer has shown (a pod with the class label), summed per
// class and per namespace. Safe for concurrent use.
type Book struct {
	mu   sync.Mutex
	pods map[types.NamespacedName]*entry
	// namespaces holds each namespace's classes' pods, by class name.
	namespaces map[string]map[string]*classPods
	// observers are told of every change after the book has taken it in, so that a
	// reconcile they start reads a book that already shows the event (see Observe).
	observers []func(old, cur *Pod)
}

// New returns an empty book.
func New() *Book {
	return &Book{pods: map[types.NamespacedName]*entry{}, namespaces: map[string]map[string]*classPods{}}
}

// Pod is what the book keeps of one sandbox pod: the fields every count comes from.
type Pod struct {
	Key types.NamespacedName
	// Class is the pod's class label; Session its session label ("" for a warm pod).
	Class, Session string
	// Controller is the UID of the pod's controller (the class of a warm pod, the session of
	// a bound one); ControllerKind its kind.
	Controller     types.UID
	ControllerKind string
	Hash           string // the template-hash label
	Node           string
	Created        time.Time
	Ready          bool
	Terminated     bool // Succeeded or Failed: its VM is gone
	Deleting       bool // a deletionTimestamp is set
	// GraceAsked is the grace period of the pod's deletion (-1 when none or not deleting);
	// OwnGrace its spec.terminationGracePeriodSeconds (-1 when unset).
	GraceAsked, OwnGrace int64
	// Recorded is the footprint recorded at creation (uvm.FootprintAnnotation), when the pod
	// has a readable one; Sized what its VM-sizing annotations ask for.
	Recorded   *agentsv1alpha1.Footprint
	Sized      agentsv1alpha1.Footprint
	ResourceV  string
	controlled bool // Controller names a class (kind AgentSandbox)
}

// Warm reports whether the pod is a live, unbound pod of a class, not being deleted: a warm
// pod of the class whose UID its controller names, a stray of any other.
func (p *Pod) Warm() bool { return p.Session == "" && !p.Deleting }

// PodOf reads what the book keeps from a pod.
func PodOf(pod *corev1.Pod) *Pod {
	p := &Pod{Key: types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name},
		Class: pod.Labels[agentsv1alpha1.ClassLabel], Session: pod.Labels[agentsv1alpha1.SessionLabel],
		Hash: pod.Labels[agentsv1alpha1.TemplateHashLabel], Node: pod.Spec.NodeName, Created: pod.CreationTimestamp.Time,
		Ready: podstate.Ready(pod), Terminated: podstate.Terminated(pod), Deleting: !pod.DeletionTimestamp.IsZero(),
		GraceAsked: -1, OwnGrace: -1, Sized: uvm.FootprintFromPod(pod), ResourceV: pod.ResourceVersion}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		p.Controller, p.ControllerKind = ref.UID, ref.Kind
		p.controlled = ref.Kind == "AgentSandbox"
	}
	if p.Deleting && pod.DeletionGracePeriodSeconds != nil {
		p.GraceAsked = *pod.DeletionGracePeriodSeconds
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && *g >= 0 {
		p.OwnGrace = *g
	}
	if f, ok := uvm.RecordedFootprint(pod); ok {
		p.Recorded = &f
	}
	return p
}

// Shape is what a class's pods are charged from: the footprint of one pod of its current
// template, and that template's hash.
type Shape struct {
	Footprint agentsv1alpha1.Footprint
	Hash      string
}

// Footprint is the VM footprint charged for pod against its class's shape (nil when the
// class is gone). The rules, and why they ignore what the annotations say now, are
// documented on the controllers' sandboxPodFootprint, which is this function.
func (p *Pod) Footprint(class *Shape) agentsv1alpha1.Footprint {
	if class != nil && p.Hash == class.Hash {
		return class.Footprint
	}
	if p.Recorded != nil {
		return *p.Recorded
	}
	if class == nil {
		return p.Sized
	}
	return uvm.MaxFootprint(class.Footprint, p.Sized)
}

// entry is a pod in the book, with its place in its class's heap of pods not yet Ready.
type entry struct {
	*Pod
	index int // in unboundPods.notReady; -1 when in none
}

// notReadyWarm: a warm pod that is neither Ready nor ended, which the pool replaces if it
// is not Ready by its deadline.
func (e *entry) notReadyWarm() bool { return e.Warm() && !e.Ready && !e.Terminated }

// Handler feeds the book from the pod informer, then passes each event on to then (the
// warm candidates a bind takes from): one handler, so that what the book and they show
// moves together. Register it once, on the manager's pod informer, before the cache starts.
func (b *Book) Handler(then ...toolscache.ResourceEventHandler) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			b.observe(obj)
			for _, h := range then {
				h.OnAdd(obj, false)
			}
		},
		UpdateFunc: func(old, obj any) {
			b.observe(obj)
			for _, h := range then {
				h.OnUpdate(old, obj)
			}
		},
		DeleteFunc: func(obj any) {
			pod := obj
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				pod = d.Obj
			}
			if pod, ok := pod.(*corev1.Pod); ok {
				b.Remove(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
			}
			for _, h := range then {
				h.OnDelete(obj)
			}
		},
	}
}

// Observe adds a function called after each change the book takes in, with the pod as it
// was (nil for an add) and as it is (nil for a delete). The pool controller wakes pools
// from it: a reconcile woken by the cache's own event could run before the book had the
// event, count the old state, and never be woken again.
func (b *Book) Observe(f func(old, cur *Pod)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observers = append(b.observers, f)
}

func (b *Book) observe(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		b.Update(pod)
	}
}

// Update records pod as it is now. A pod without the class label is none of the book's.
func (b *Book) Update(pod *corev1.Pod) {
	cur := PodOf(pod)
	if cur.Class == "" {
		b.Remove(cur.Key) // a label removed: the pod left every class
		return
	}
	b.mu.Lock()
	prev := b.pods[cur.Key]
	if prev != nil {
		b.unlink(prev)
	}
	e := &entry{Pod: cur, index: -1}
	b.pods[cur.Key] = e
	b.link(e)
	observers := b.observers
	b.mu.Unlock()
	var old *Pod
	if prev != nil {
		old = prev.Pod
	}
	for _, f := range observers {
		f(old, cur)
	}
}

// Remove forgets a pod that is gone.
func (b *Book) Remove(key types.NamespacedName) {
	b.mu.Lock()
	prev := b.pods[key]
	if prev == nil {
		b.mu.Unlock()
		return
	}
	b.unlink(prev)
	delete(b.pods, key)
	observers := b.observers
	b.mu.Unlock()
	for _, f := range observers {
		f(prev.Pod, nil)
	}
}

// Resync makes the book show pods, a List of every sandbox pod: each is taken in again,
// and what the book holds beyond them is removed. The audit calls it after finding drift.
func (b *Book) Resync(pods []corev1.Pod) {
	listed := make(map[types.NamespacedName]bool, len(pods))
	for i := range pods {
		listed[types.NamespacedName{Namespace: pods[i].Namespace, Name: pods[i].Name}] = true
		b.Update(&pods[i])
	}
	b.mu.Lock()
	var gone []types.NamespacedName
	for key := range b.pods {
		if !listed[key] {
			gone = append(gone, key)
		}
	}
	b.mu.Unlock()
	for _, key := range gone {
		b.Remove(key)
	}
}

// Get returns what the book shows of a pod, if anything.
func (b *Book) Get(key types.NamespacedName) (Pod, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.pods[key]
	if !ok {
		return Pod{}, false
	}
	return *e.Pod, true
}

// classPods is one class's pods, summed.
type classPods struct {
	// unbound are the live, unbound pods not being deleted, by their controller's UID: the
	// class's own warm pool under its UID, strays under any other (or none).
	unbound map[types.UID]*unboundPods
	bound   tally // holding a session, not being deleted
	// terminating are being deleted, warm or bound: their VMs still run. Kept one by one:
	// the pool re-deletes those that asked for more grace than the class gives.
	terminating map[types.NamespacedName]*entry
	// live are the pods the quota charges (every pod of the class not yet ended).
	live tally
	// holders are the sessions holding a live pod of the class (see Holder).
	holders map[Holder]int
}

// unboundPods are the unbound pods of one controller: a class's warm pool, or strays.
type unboundPods struct {
	tally
	// notReady are the pods neither Ready nor ended, oldest first: the pool's next deadline.
	notReady notReadyHeap
	// nodes counts the pods on each node: a node gone strands them.
	nodes map[string]int
}

// Holder is a session that holds a pod: the pod's controller is that session (UID) and its
// session label names it. An owner reference alone, which anyone who may create pods can
// write, holds nothing.
type Holder struct {
	UID  types.UID
	Name string
}

// holderOf: the session a live, bound pod is held by, if the pod says so both ways.
func holderOf(p *Pod) (Holder, bool) {
	if p.Deleting || p.Terminated || p.Session == "" || p.ControllerKind != "AgentSession" {
		return Holder{}, false
	}
	return Holder{UID: p.Controller, Name: p.Session}, true
}

func (b *Book) class(key types.NamespacedName, create bool) *classPods {
	ns := b.namespaces[key.Namespace]
	if ns == nil {
		if !create {
			return nil
		}
		ns = map[string]*classPods{}
		b.namespaces[key.Namespace] = ns
	}
	c := ns[key.Name]
	if c == nil && create {
		c = &classPods{unbound: map[types.UID]*unboundPods{}, terminating: map[types.NamespacedName]*entry{},
			holders: map[Holder]int{}}
		ns[key.Name] = c
	}
	return c
}

// forgetIfEmpty drops a class that holds no pod any more. Called with b locked.
func (b *Book) forgetIfEmpty(key types.NamespacedName, c *classPods) {
	if c.live.n > 0 || c.bound.n > 0 || len(c.unbound) > 0 || len(c.terminating) > 0 {
		return
	}
	delete(b.namespaces[key.Namespace], key.Name)
	if len(b.namespaces[key.Namespace]) == 0 {
		delete(b.namespaces, key.Namespace)
	}
}

func classKey(p *Pod) types.NamespacedName {
	return types.NamespacedName{Namespace: p.Key.Namespace, Name: p.Class}
}

// warmOwner is the key a warm pod is counted under: its controller when that is a class.
func warmOwner(p *Pod) types.UID {
	if p.controlled {
		return p.Controller
	}
	return ""
}

// link counts e in its class. Called with b locked.
func (b *Book) link(e *entry) {
	c := b.class(classKey(e.Pod), true)
	switch {
	case e.Deleting:
		c.terminating[e.Key] = e
	case e.Session != "":
		c.bound.add(e.Pod, 1)
	default:
		u := c.unbound[warmOwner(e.Pod)]
		if u == nil {
			u = &unboundPods{nodes: map[string]int{}}
			c.unbound[warmOwner(e.Pod)] = u
		}
		u.add(e.Pod, 1)
		if e.Node != "" {
			u.nodes[e.Node]++
		}
		if e.notReadyWarm() {
			heap.Push(&u.notReady, e)
		}
	}
	if !e.Terminated {
		c.live.add(e.Pod, 1)
	}
	if h, ok := holderOf(e.Pod); ok {
		c.holders[h]++
	}
}

// unlink undoes link. Called with b locked.
func (b *Book) unlink(e *entry) {
	key := classKey(e.Pod)
	c := b.class(key, false)
	if c == nil {
		return
	}
	switch {
	case e.Deleting:
		delete(c.terminating, e.Key)
	case e.Session != "":
		c.bound.add(e.Pod, -1)
	default:
		owner := warmOwner(e.Pod)
		if u := c.unbound[owner]; u != nil {
			u.add(e.Pod, -1)
			if e.Node != "" {
				if u.nodes[e.Node]--; u.nodes[e.Node] <= 0 {
					delete(u.nodes, e.Node)
				}
			}
			if e.index >= 0 {
				heap.Remove(&u.notReady, e.index)
			}
			if u.n == 0 {
				delete(c.unbound, owner)
			}
		}
	}
	if !e.Terminated {
		c.live.add(e.Pod, -1)
	}
	if h, ok := holderOf(e.Pod); ok {
		if c.holders[h]--; c.holders[h] <= 0 {
			delete(c.holders, h)
		}
	}
	b.forgetIfEmpty(key, c)
}

// notReadyHeap orders warm pods not yet Ready by creation, oldest first.
type notReadyHeap = indexheap.Heap[*entry]

// HeapLess orders the pods of a notReadyHeap.
func (e *entry) HeapLess(o *entry) bool { return e.Created.Before(o.Created) }

// SetHeapIndex records e's place in its notReadyHeap.
func (e *entry) SetHeapIndex(i int) { e.index = i }

// tally sums a set of pods: how many, how many Ready, how many ended, and by template hash
// what their footprints come to.
type tally struct {
	n, ready, terminated int
	hashes               map[string]*hashTally
}

// hashTally is the pods of one template hash. A pod of the class's current hash is charged
// the class's footprint, so only the count matters; one of an older hash is charged its
// recorded footprint (summed here), or, without a record, the larger of the class's and its
// sizing annotations' (kept one by one: rare, and the class's may change).
type hashTally struct {
	n, ready   int
	recorded   footprintSum
	unrecorded map[types.NamespacedName]agentsv1alpha1.Footprint
}

// footprintSum is a sum of footprints in plain integers: a tally adds and subtracts one pod
// at a time, and resource.Quantity arithmetic would allocate on each.
type footprintSum struct {
	memory, vcpus int64
}

func (s *footprintSum) add(f agentsv1alpha1.Footprint, sign int64) {
	s.memory += sign * f.Memory.Value()
	s.vcpus += sign * int64(f.VCPUs)
}

func (t *tally) add(p *Pod, sign int) {
	t.n += sign
	if p.Ready {
		t.ready += sign
	}
	if p.Terminated {
		t.terminated += sign
	}
	if t.hashes == nil {
		t.hashes = map[string]*hashTally{}
	}
	h := t.hashes[p.Hash]
	if h == nil {
		h = &hashTally{}
		t.hashes[p.Hash] = h
	}
	h.n += sign
	if p.Ready {
		h.ready += sign
	}
	switch {
	case p.Recorded != nil:
		h.recorded.add(*p.Recorded, int64(sign))
	case sign > 0:
		if h.unrecorded == nil {
			h.unrecorded = map[types.NamespacedName]agentsv1alpha1.Footprint{}
		}
		h.unrecorded[p.Key] = p.Sized
	default:
		delete(h.unrecorded, p.Key)
	}
	if h.n == 0 {
		delete(t.hashes, p.Hash)
	}
}

// footprint is the sum of the pods' footprints against their class's shape (nil: gone),
// pod by pod as Pod.Footprint charges them.
func (t *tally) footprint(class *Shape) footprintSum {
	var sum footprintSum
	for hash, h := range t.hashes {
		if class != nil && hash == class.Hash {
			sum.memory += int64(h.n) * class.Footprint.Memory.Value()
			sum.vcpus += int64(h.n) * int64(class.Footprint.VCPUs)
			continue
		}
		sum.memory += h.recorded.memory
		sum.vcpus += h.recorded.vcpus
		for _, sized := range h.unrecorded {
			f := sized
			if class != nil {
				f = uvm.MaxFootprint(class.Footprint, sized)
			}
			sum.add(f, 1)
		}
	}
	return sum
}

// Footprint returns the sum as the API's type, in the binary-SI format the class's own
// footprint is written in.
func (s footprintSum) Footprint() agentsv1alpha1.Footprint {
	return agentsv1alpha1.Footprint{Memory: *resource.NewQuantity(s.memory, resource.BinarySI),
		VCPUs: int32(max(math.MinInt32, min(math.MaxInt32, s.vcpus)))}
}
