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

// Observe reconciles the expectations with what the cache shows and returns the creations
// still unseen and the deletions still counted as warm. present holds every pod of the pool
// in the cache (a created pod may already be bound by the time the cache shows it); warm
// holds the pool's warm pods that are not terminating.
func (e *Pods) Observe(key types.NamespacedName, present, warm map[string]bool) (pendingCreations, pendingDeletions map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pool(key)
	now := e.clock.Now()
	pendingCreations, pendingDeletions = map[string]bool{}, map[string]bool{}
	for name, at := range p.creations {
		if present[name] || now.Sub(at) > TTL {
			delete(p.creations, name)
			continue
		}
		pendingCreations[name] = true
	}
	for name, at := range p.deletions {
		if !warm[name] || now.Sub(at) > TTL {
			delete(p.deletions, name)
			continue
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
