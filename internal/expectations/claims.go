package expectations

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// ClaimTTL bounds how long a bind is remembered while the cache catches up; past it, the
// cache is trusted again (a watch event was lost, or the pod went away before it showed).
const ClaimTTL = 30 * time.Second

// Claims remembers this manager's binds until its cache shows them. The pod write
// with a resourceVersion precondition is the lock that makes a double bind impossible on
// the API server; this tracker only keeps concurrent workers from racing for the same warm
// pod, and keeps a session that was just bound from binding again before the cache sees its
// pod. After a restart the cache starts from a fresh list, so nothing here needs to survive.
type Claims struct {
	mu       sync.Mutex
	pods     map[types.NamespacedName]time.Time // warm pods a bind is writing, or wrote
	sessions map[types.UID]claim                // session -> the pod it bound or created
	// lastSweep and lastSessionSweep: when expired pod and session claims were last dropped.
	lastSweep, lastSessionSweep time.Time
	clock                       clock.PassiveClock
}

type claim struct {
	pod string
	at  time.Time
}

// NewClaims returns an empty tracker on clk.
func NewClaims(clk clock.PassiveClock) *Claims {
	return &Claims{pods: map[types.NamespacedName]time.Time{}, sessions: map[types.UID]claim{}, clock: clk}
}

// TryTakePod marks a warm pod as being bound; false if another worker took it first.
func (c *Claims) TryTakePod(pod types.NamespacedName) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if at, ok := c.pods[pod]; ok && now.Sub(at) < ClaimTTL {
		return false
	}
	c.pods[pod] = now
	// A claim is kept until it expires: the pod it names leaves the warm pods a bind looks
	// at once the cache shows it bound, so nothing else needs to forget it. Drop the expired
	// ones now and then, so the map stays as small as ClaimTTL's worth of binds.
	if now.Sub(c.lastSweep) >= ClaimTTL {
		for k, at := range c.pods {
			if now.Sub(at) >= ClaimTTL {
				delete(c.pods, k)
			}
		}
		c.lastSweep = now
	}
	return true
}

// PodTaken reports whether a bind has claimed the pod and the cache may not show it yet.
func (c *Claims) PodTaken(pod types.NamespacedName) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.pods[pod]
	return ok && c.clock.Now().Sub(at) < ClaimTTL
}

// ReleasePod forgets a pod claim: the bind failed.
func (c *Claims) ReleasePod(pod types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pods, pod)
}

// SessionBound records that a session now holds the named pod.
func (c *Claims) SessionBound(session types.UID, pod string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	c.sessions[session] = claim{pod: pod, at: now}
	// A new leader records every bind it finds (controllers' handover), also those of
	// sessions it never asks about again: drop the expired records now and then, so the
	// map stays as small as ClaimTTL's worth of binds.
	if now.Sub(c.lastSessionSweep) >= ClaimTTL {
		for k, cl := range c.sessions {
			if now.Sub(cl.at) >= ClaimTTL {
				delete(c.sessions, k)
			}
		}
		c.lastSessionSweep = now
	}
}

// SessionWriteUnknown records that a bind write for the session failed without saying
// whether it landed (the connection dropped, a timeout): until the API server has been
// asked, or ClaimTTL has passed, the session may hold a pod its cache does not show.
func (c *Claims) SessionWriteUnknown(session types.UID) {
	c.SessionBound(session, "")
}

// SessionWriteIsUnknown reports whether a bind write for the session has an unknown outcome
// (SessionWriteUnknown) and nothing since told which.
func (c *Claims) SessionWriteIsUnknown(session types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.sessions[session]
	return ok && cl.pod == "" && c.clock.Now().Sub(cl.at) < ClaimTTL
}

// BoundPod returns the pod a session was bound to while the cache may still lag.
func (c *Claims) BoundPod(session types.UID) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.sessions[session]
	if !ok {
		return "", false
	}
	if c.clock.Now().Sub(cl.at) >= ClaimTTL {
		delete(c.sessions, session)
		return "", false
	}
	return cl.pod, true
}

// ForgetSession drops a session's record once the cache shows its pod.
func (c *Claims) ForgetSession(session types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, session)
}
