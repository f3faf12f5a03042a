package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// expectationTTL bounds how long a write may stay unobserved before it is forgotten, so a
// lost watch event cannot freeze a pool. The ReplicaSet controller uses five minutes.
const expectationTTL = 5 * time.Minute

// podExpectations remembers the pods a pool created or deleted that its cache has not shown
// yet, as the ReplicaSet controller's expectations do, but by name rather than by count: a
// reconcile that runs before the cache catches up counts a created pod as present and a
// deleted one as gone, so it never creates or deletes twice.
type podExpectations struct {
	mu    sync.Mutex
	pools map[types.NamespacedName]*poolExpectations
	clock clock.PassiveClock
}

type poolExpectations struct {
	creations map[string]time.Time // pod name -> when created
	deletions map[string]time.Time // pod name -> when deleted
}

func newPodExpectations(clk clock.PassiveClock) *podExpectations {
	return &podExpectations{pools: map[types.NamespacedName]*poolExpectations{}, clock: clk}
}

func (e *podExpectations) pool(key types.NamespacedName) *poolExpectations {
	p, ok := e.pools[key]
	if !ok {
		p = &poolExpectations{creations: map[string]time.Time{}, deletions: map[string]time.Time{}}
		e.pools[key] = p
	}
	return p
}

// Created records a pod the pool created.
func (e *podExpectations) Created(key types.NamespacedName, podName string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool(key).creations[podName] = e.clock.Now()
}

// Deleted records a pod the pool deleted.
func (e *podExpectations) Deleted(key types.NamespacedName, podName string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool(key).deletions[podName] = e.clock.Now()
}

// Observe reconciles the expectations with what the cache shows and returns the creations
// still unseen and the deletions still counted as warm. present holds every pod of the pool
// in the cache (a created pod may already be bound by the time the cache shows it); warm
// holds the pool's warm pods that are not terminating.
func (e *podExpectations) Observe(key types.NamespacedName, present, warm map[string]bool) (pendingCreations, pendingDeletions map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pool(key)
	now := e.clock.Now()
	pendingCreations, pendingDeletions = map[string]bool{}, map[string]bool{}
	for name, at := range p.creations {
		if present[name] || now.Sub(at) > expectationTTL {
			delete(p.creations, name)
			continue
		}
		pendingCreations[name] = true
	}
	for name, at := range p.deletions {
		if !warm[name] || now.Sub(at) > expectationTTL {
			delete(p.deletions, name)
			continue
		}
		pendingDeletions[name] = true
	}
	return pendingCreations, pendingDeletions
}

// Forget drops a pool's expectations (the pool was deleted).
func (e *podExpectations) Forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pools, key)
}
