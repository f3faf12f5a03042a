package poolbook

import (
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// Pool is one class's pods as its pool controller counts them.
type Pool struct {
	// Warm are the class's own warm pods (its UID is their controller), not being deleted;
	// WarmReady the Ready ones, WarmEnded those whose sandbox ended (the pool replaces them).
	Warm, WarmReady, WarmEnded int
	// OldTemplate are the warm pods of a template hash other than the class's current one.
	OldTemplate int
	// Strays are the unbound pods labelled for the class that it does not control.
	Strays int
	// Bound are the pods holding a session, not being deleted.
	Bound int
	// Terminating are being deleted; UnboundTerminating those of them without a session.
	Terminating, UnboundTerminating int
	// GraceExceeded: some terminating pod's deletion asked for more grace than its class
	// gives (the pool deletes it again with the class's).
	GraceExceeded bool
	// OldestNotReady is the creation time of the oldest warm pod not Ready and not ended
	// (zero when none): the pool's next ready deadline.
	OldestNotReady time.Time
	// WarmNodes are the nodes the class's warm pods run on (sorted).
	WarmNodes []string
	// Footprint is the footprint of the warm and bound pods; WarmMemory the warm pods' memory
	// in bytes (idle VM memory).
	Footprint  agentsv1alpha1.Footprint
	WarmMemory int64
}

// Pool counts class's pods. uid is the class's (its warm pods name it as controller); shape
// what its pods are charged; graceSeconds the longest deletion grace its pods may have.
func (b *Book) Pool(class types.NamespacedName, uid types.UID, shape *Shape, graceSeconds int64) Pool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.class(class, false)
	if c == nil {
		return Pool{Footprint: footprintSum{}.Footprint()}
	}
	var p Pool
	warm := c.unbound[uid]
	if warm == nil {
		warm = &unboundPods{}
	}
	p.Warm, p.WarmReady, p.WarmEnded = warm.n, warm.ready, warm.terminated
	for hash, h := range warm.hashes {
		if shape == nil || hash != shape.Hash {
			p.OldTemplate += h.n
		}
	}
	for owner, t := range c.unbound {
		if owner != uid {
			p.Strays += t.n
		}
	}
	p.Bound = c.bound.n
	p.Terminating = len(c.terminating)
	for _, e := range c.terminating {
		if e.Session == "" {
			p.UnboundTerminating++
		}
		allowed := graceSeconds
		if e.OwnGrace >= 0 {
			allowed = min(allowed, e.OwnGrace)
		}
		if e.GraceAsked > allowed {
			p.GraceExceeded = true
		}
	}
	if len(warm.notReady) > 0 {
		p.OldestNotReady = warm.notReady[0].Created
	}
	for node := range warm.nodes {
		p.WarmNodes = append(p.WarmNodes, node)
	}
	slices.Sort(p.WarmNodes)
	warmSum := warm.footprint(shape)
	total := c.bound.footprint(shape)
	total.memory += warmSum.memory
	total.vcpus += warmSum.vcpus
	p.Footprint = total.Footprint()
	p.WarmMemory = warmSum.memory
	return p
}

// Namespace is what the quota charges in one namespace.
type Namespace struct {
	// Warm are the live, unbound pods (the quota's warmSandboxes, strays included), by class
	// in WarmByClass.
	Warm        int
	WarmByClass map[string]int
	// Footprint is the footprint of every pod not yet ended, terminating ones included:
	// their VMs run until the pods are gone.
	Footprint agentsv1alpha1.Footprint
	// Holders are the sessions holding a live pod.
	Holders map[Holder]bool
}

// Namespace sums a namespace's sandbox pods; shapes gives each class's shape by name (nil
// for a class that is gone).
func (b *Book) Namespace(ns string, shapes func(class string) *Shape) Namespace {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := Namespace{WarmByClass: map[string]int{}, Holders: map[Holder]bool{}}
	var total footprintSum
	for name, c := range b.namespaces[ns] {
		f := c.live.footprint(shapes(name))
		total.memory += f.memory
		total.vcpus += f.vcpus
		for _, t := range c.unbound {
			if warm := t.n - t.terminated; warm > 0 {
				out.Warm += warm
				out.WarmByClass[name] += warm
			}
		}
		for h := range c.holders {
			out.Holders[h] = true
		}
	}
	out.Footprint = total.Footprint()
	return out
}

// Has reports whether the book shows a pod of that name, in any state.
func (b *Book) Has(key types.NamespacedName) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.pods[key]
	return ok
}
