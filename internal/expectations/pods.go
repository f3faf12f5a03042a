// Package expectations remembers what a controller wrote that its cache does not show yet,
// so that a reconcile running on a stale cache neither writes twice nor undoes a write: the
// pods a pool created or deleted (Pods, as the ReplicaSet controller's expectations), and
// the warm pods being bound and the sessions just bound (Claims). Both are memory only: a
// new leader starts from a fresh cache, which shows every earlier write.
package expectations

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// TTL bounds how long a write may stay unobserved before it is forgotten, so a
// lost watch event cannot freeze a pool. The ReplicaSet controller uses five minutes.
const TTL = 5 * time.Minute

// Pods remembers the pods a pool created or deleted that its cache has not shown
// yet, as the ReplicaSet controller's expectations do, but by name rather than by count: a
// reconcile that runs before the cache catches up counts a created pod as present and a
// deleted one as gone, so it never creates or deletes twice.
type Pods struct {
	mu    sync.Mutex
	pools map[types.NamespacedName]*poolExpectations
	clock clock.PassiveClock
}

type poolExpectations struct {
	creations map[string]time.Time // pod name -> when created
	deletions map[string]time.Time // pod name -> when deleted
}

// NewPods returns empty expectations on clk.
func NewPods(clk clock.PassiveClock) *Pods {
	return &Pods{pools: map[types.NamespacedName]*poolExpectations{}, clock: clk}
}

func (e *Pods) pool(key types.NamespacedName) *poolExpectations {
	p, ok := e.pools[key]
	if !ok {
		p = &poolExpectations{creations: map[string]time.Time{}, deletions: map[string]time.Time{}}
		e.pools[key] = p
	}
	return p
}

// Created records a pod the pool created.
func (e *Pods) Created(key types.NamespacedName, podName string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool(key).creations[podName] = e.clock.Now()
}

// Deleted records a pod the pool deleted.
func (e *Pods) Deleted(key types.NamespacedName, podName string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool(key).deletions[podName] = e.clock.Now()
}

// Seen lowers the expectations of the pool key from one pod event, as the ReplicaSet
// controller's handlers do: a pod that exists is no longer a pending creation, and one that
// is no longer warm (terminating, bound, gone) no longer a pending deletion. The pod
// informer's handler calls it for every pod of the pool it sees change.
func (e *Pods) Seen(key types.NamespacedName, podName string, present, warm bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pools[key]
	if !ok {
		return
	}
	if present {
		delete(p.creations, podName)
	}
	if !warm {
		delete(p.deletions, podName)
	}
}

// Pending returns the pool's creations still unseen and its deletions still counted as
// warm. It checks each against the book the events keep (present: the pod exists in any
// state, since a created pod may be bound by the time it is seen; warm: it is the pool's
// warm pod, not terminating), because an event can come before the write's own call
// returns, and so before Created or Deleted recorded what it lowers. Expectations older
// than TTL are forgotten.
func (e *Pods) Pending(key types.NamespacedName, present, warm func(podName string) bool) (pendingCreations, pendingDeletions map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pools[key]
	if !ok {
		return nil, nil
	}
	now := e.clock.Now()
	for name, at := range p.creations {
		if present(name) || now.Sub(at) > TTL {
			delete(p.creations, name)
			continue
		}
		if pendingCreations == nil {
			pendingCreations = map[string]bool{}
		}
		pendingCreations[name] = true
	}
	for name, at := range p.deletions {
		if !warm(name) || now.Sub(at) > TTL {
			delete(p.deletions, name)
			continue
		}
		if pendingDeletions == nil {
			pendingDeletions = map[string]bool{}
		}
		pendingDeletions[name] = true
	}
	return pendingCreations, pendingDeletions
}

// Forget drops a pool's expectations (the pool was deleted).
func (e *Pods) Forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pools, key)
}
