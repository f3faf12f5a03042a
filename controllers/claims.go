package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// claimTTL bounds how long a bind is remembered while the cache catches up; past it, the
// cache is trusted again (a watch event was lost, or the pod went away before it showed).
const claimTTL = 30 * time.Second

// claimTracker remembers this manager's binds until its cache shows them. The pod write
// with a resourceVersion precondition is the lock that makes a double bind impossible on
// the API server; this tracker only keeps concurrent workers from racing for the same warm
// pod, and keeps a session that was just bound from binding again before the cache sees its
// pod. After a restart the cache starts from a fresh list, so nothing here needs to survive.
type claimTracker struct {
	mu       sync.Mutex
	pods     map[types.NamespacedName]time.Time // warm pods a bind is writing, or wrote
	sessions map[types.UID]claim                // session -> the pod it bound or created
	// lastSweep: when expired pod claims were last dropped.
	lastSweep time.Time
	clock     clock.PassiveClock
}

type claim struct {
	pod string
	at  time.Time
}

func newClaimTracker(clk clock.PassiveClock) *claimTracker {
	return &claimTracker{pods: map[types.NamespacedName]time.Time{}, sessions: map[types.UID]claim{}, clock: clk}
}

// tryTakePod marks a warm pod as being bound; false if another worker took it first.
func (c *claimTracker) tryTakePod(pod types.NamespacedName) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if at, ok := c.pods[pod]; ok && now.Sub(at) < claimTTL {
		return false
	}
	c.pods[pod] = now
	// A claim is kept until it expires: the pod it names leaves the warm pods a bind looks
	// at once the cache shows it bound, so nothing else needs to forget it. Drop the expired
	// ones now and then, so the map stays as small as claimTTL's worth of binds.
	if now.Sub(c.lastSweep) >= claimTTL {
		for k, at := range c.pods {
			if now.Sub(at) >= claimTTL {
				delete(c.pods, k)
			}
		}
		c.lastSweep = now
	}
	return true
}

// podTaken reports whether a bind has claimed the pod and the cache may not show it yet.
func (c *claimTracker) podTaken(pod types.NamespacedName) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.pods[pod]
	return ok && c.clock.Now().Sub(at) < claimTTL
}

// releasePod forgets a pod claim: the bind failed.
func (c *claimTracker) releasePod(pod types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pods, pod)
}

// sessionBound records that a session now holds the named pod.
func (c *claimTracker) sessionBound(session types.UID, pod string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessions[session] = claim{pod: pod, at: c.clock.Now()}
}

// boundPod returns the pod a session was bound to while the cache may still lag.
func (c *claimTracker) boundPod(session types.UID) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.sessions[session]
	if !ok {
		return "", false
	}
	if c.clock.Now().Sub(cl.at) >= claimTTL {
		delete(c.sessions, session)
		return "", false
	}
	return cl.pod, true
}

// forgetSession drops a session's record once the cache shows its pod.
func (c *claimTracker) forgetSession(session types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, session)
}

// writtenStatuses remembers the session statuses this manager wrote until its cache shows
// them. The manager is the only writer of a session's status, so a cached status that
// differs from the last one written is simply stale: a reconcile that ran on it would act
// on the past (fail as "pod deleted" a session it has just expired, say).
type writtenStatuses struct {
	mu        sync.Mutex
	statuses  map[types.UID]writtenStatus
	lastSweep time.Time
	clock     clock.PassiveClock
}

type writtenStatus struct {
	status *agentsv1alpha1.AgentSessionStatus
	at     time.Time
}

func newWrittenStatuses(clk clock.PassiveClock) *writtenStatuses {
	return &writtenStatuses{statuses: map[types.UID]writtenStatus{}, clock: clk}
}

// remember records the status just written for the session.
func (w *writtenStatuses) remember(s *agentsv1alpha1.AgentSession) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.clock.Now()
	w.statuses[s.UID] = writtenStatus{status: s.Status.DeepCopy(), at: now}
	// Entries of sessions deleted before the cache caught up are never overlaid again;
	// drop expired ones now and then, so the map stays as small as the cache's lag.
	if now.Sub(w.lastSweep) >= claimTTL {
		for uid, ws := range w.statuses {
			if now.Sub(ws.at) >= claimTTL {
				delete(w.statuses, uid)
			}
		}
		w.lastSweep = now
	}
}

// overlay replaces a stale cached status with the one last written, and forgets the
// written one once the cache has caught up (or after claimTTL, should an event be lost).
func (w *writtenStatuses) overlay(s *agentsv1alpha1.AgentSession) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws, ok := w.statuses[s.UID]
	switch {
	case !ok:
	case equalSessionStatus(&s.Status, ws.status) || w.clock.Now().Sub(ws.at) >= claimTTL:
		delete(w.statuses, s.UID)
	default:
		s.Status = *ws.status.DeepCopy()
	}
}
