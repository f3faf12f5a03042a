package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/expectations"
)

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
	if now.Sub(w.lastSweep) >= expectations.ClaimTTL {
		for uid, ws := range w.statuses {
			if now.Sub(ws.at) >= expectations.ClaimTTL {
				delete(w.statuses, uid)
			}
		}
		w.lastSweep = now
	}
}

// overlay replaces a stale cached status with the one last written, and forgets the
// written one once the cache has caught up (or after expectations.ClaimTTL, should an event be lost).
func (w *writtenStatuses) overlay(s *agentsv1alpha1.AgentSession) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws, ok := w.statuses[s.UID]
	switch {
	case !ok:
	case sameStatus(&s.Status, ws.status) || w.clock.Now().Sub(ws.at) >= expectations.ClaimTTL:
		delete(w.statuses, s.UID)
	default:
		s.Status = *ws.status.DeepCopy()
	}
}
