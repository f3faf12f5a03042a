package controllers

import (
	"fmt"
	"sync"
	"time"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"k8s.io/apimachinery/pkg/types"
)

// Fallbacks for a class whose lifetime fields are unset: the CRD defaults them, so these
// only matter for objects that bypassed defaulting (or a class that is gone).
const (
	defaultMaxLifetime      = time.Hour
	defaultIdleTimeout      = 15 * time.Minute
	defaultTTLAfterFinished = 10 * time.Minute

	// maxClockSkew is how far ahead of the manager's clock a client's heartbeat may be.
	maxClockSkew = time.Minute
)

// startTimeout is how long a session may wait for its sandbox (Pending or Queued) from its
// creation: its own spec.startTimeout capped by the class's spec.lifetime.startTimeout,
// the class's when it sets none, and 0 (no limit) when neither does. class may be nil.
func startTimeout(class *agentsv1alpha1.LifetimeSpec, s *agentsv1alpha1.AgentSessionSpec) time.Duration {
	var limit, own time.Duration
	if class != nil && class.StartTimeout != nil {
		limit = max(class.StartTimeout.Duration, 0)
	}
	if s.StartTimeout != nil {
		own = max(s.StartTimeout.Duration, 0)
	}
	switch {
	case own == 0:
		return limit
	case limit == 0:
		return own
	default:
		return min(own, limit)
	}
}

// lifetime is a session's effective limits: its own values, capped by its class's.
type lifetime struct {
	MaxLifetime      time.Duration
	IdleTimeout      time.Duration
	TTLAfterFinished time.Duration
}

// effectiveLifetime caps the session's requested limits by the class's. A session may ask
// for less than its class allows, never more; unset values take the class's. class may be
// nil when the class is gone.
func effectiveLifetime(class *agentsv1alpha1.LifetimeSpec, s *agentsv1alpha1.AgentSessionSpec) lifetime {
	var caps agentsv1alpha1.LifetimeSpec
	if class != nil {
		caps = *class
	}
	lt := lifetime{
		MaxLifetime:      capDuration(s.MaxLifetime, caps.MaxLifetime, defaultMaxLifetime),
		IdleTimeout:      capDuration(s.IdleTimeout, caps.IdleTimeout, defaultIdleTimeout),
		TTLAfterFinished: capDuration(s.TTLAfterFinished, caps.TTLAfterFinished, defaultTTLAfterFinished),
	}
	// An idle timeout longer than the lifetime could never fire; the class's default (15m)
	// must not outlast a shorter maxLifetime either.
	lt.IdleTimeout = min(lt.IdleTimeout, lt.MaxLifetime)
	return lt
}

func capDuration(requested, limit *agentsv1alpha1.Duration, fallback time.Duration) time.Duration {
	c := fallback
	if limit != nil && limit.Duration > 0 {
		c = limit.Duration
	}
	if requested != nil && requested.Duration > 0 && requested.Duration < c {
		return requested.Duration
	}
	return c
}

// parseHeartbeat reads the agents.hyperpool.io/last-activity annotation: an RFC 3339 time.
// A missing annotation is no heartbeat (zero time, no error).
func parseHeartbeat(annotations map[string]string) (time.Time, error) {
	v, ok := annotations[agentsv1alpha1.LastActivityAnnotation]
	if !ok || v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("annotation %s=%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z); the idle timeout counts from the bind until it is", agentsv1alpha1.LastActivityAnnotation, v)
	}
	return t, nil
}

// deadline is when a bound session ends, and why.
type deadline struct {
	// expiry is the hard deadline, the bind plus the max lifetime, to the microsecond:
	// status.preciseExpiryTime.
	expiry time.Time
	// end is when the session ends: expiry, or the idle timeout after its last activity
	// when that comes first.
	end time.Time
	// reason is why it ends at end: MaxLifetime or IdleTimeout.
	reason string
}

// sessionDeadline is the one place a bound session's deadline is computed: at
// bound+MaxLifetime, or IdleTimeout after its last activity (the bind, or the latest
// heartbeat), whichever comes first. A heartbeat further in the future than maxClockSkew is
// ignored: it would otherwise keep an idle session alive until that time.
//
// bound is the stored bind time (status.preciseBoundTime, to the microsecond), and the
// deadline is exact: nothing here rounds to the second, which made sessions end up to 2 s
// after bind+maxLifetime when the bind time and the expiry were each rounded up. The hard
// deadline is only rounded up to the microsecond, as status.preciseExpiryTime stores it,
// so the session never ends before the time its status shows. The idle timeout is compared
// with the exact max lifetime, so an idle timeout capped at it is the max lifetime.
func sessionDeadline(bound, lastActivity time.Time, lt lifetime, now time.Time) deadline {
	d := deadline{expiry: ceilTo(bound.Add(lt.MaxLifetime), time.Microsecond), reason: agentsv1alpha1.ReasonMaxLifetime}
	d.end = d.expiry
	active := bound
	if lastActivity.After(active) && !lastActivity.After(now.Add(maxClockSkew)) {
		active = lastActivity
	}
	if idle := active.Add(lt.IdleTimeout); idle.Before(bound.Add(lt.MaxLifetime)) {
		d.end, d.reason = idle, agentsv1alpha1.ReasonIdleTimeout
	}
	return d
}

// ceilTo rounds t up to a whole multiple of unit (since the zero time, as Truncate does).
func ceilTo(t time.Time, unit time.Duration) time.Time {
	if f := t.Truncate(unit); !f.Equal(t) {
		return f.Add(unit)
	}
	return t
}

// malformedHeartbeats remembers, per session, the malformed heartbeat value last reported
// with a MalformedHeartbeat event: the same bad value is reported once, a new one again. It
// is memory only (a new leader reports each once more) and forgets a session when it is
// deleted.
type malformedHeartbeats struct {
	mu       sync.Mutex
	reported map[types.NamespacedName]reportedHeartbeat
}

type reportedHeartbeat struct {
	uid   types.UID
	value string
}

// firstReport records that value is being reported for the session and says whether it
// was not reported before.
func (m *malformedHeartbeats) firstReport(key types.NamespacedName, uid types.UID, value string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reported == nil {
		m.reported = map[types.NamespacedName]reportedHeartbeat{}
	}
	if m.reported[key] == (reportedHeartbeat{uid, value}) {
		return false
	}
	m.reported[key] = reportedHeartbeat{uid, value}
	return true
}

func (m *malformedHeartbeats) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.reported, key)
}
