package controllers

import (
	"fmt"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// A stored object can hold a value the manager cannot use even though the API server
// accepted it: a duration stored before the CRD bounded it (a 3000000h overflows Go's
// time.Duration). Such a value decodes (see agentsv1alpha1.Duration) and is reported on that
// one object with reason InvalidSpec; it never fails the list/watch of every other object.

// namedDuration is one duration field of a spec, with its path for messages.
type namedDuration struct {
	path  string
	value *agentsv1alpha1.Duration
}

// invalidDuration returns the first field whose stored value is not a usable duration.
func invalidDuration(fields ...namedDuration) (path, raw string, bad bool) {
	for _, f := range fields {
		if f.value == nil {
			continue
		}
		if raw, bad := f.value.Invalid(); bad {
			return f.path, raw, true
		}
	}
	return "", "", false
}

// sessionSpecProblem says why a session's stored spec cannot be served, or "".
func sessionSpecProblem(s *agentsv1alpha1.AgentSession) string {
	path, raw, bad := invalidDuration(
		namedDuration{"spec.maxLifetime", s.Spec.MaxLifetime},
		namedDuration{"spec.idleTimeout", s.Spec.IdleTimeout},
		namedDuration{"spec.ttlAfterFinished", s.Spec.TTLAfterFinished},
	)
	if !bad {
		return ""
	}
	return fmt.Sprintf("%s %q is not a duration the manager can use (stored before the CRD bounded it); delete this session and create one with a duration such as 30m", path, raw)
}

// sandboxSpecProblem says why a class's stored spec cannot be served, or "": a duration it
// cannot use, or a template it must not build pods from.
func sandboxSpecProblem(sb *agentsv1alpha1.AgentSandbox) string {
	path, raw, bad := invalidDuration(
		namedDuration{"spec.lifetime.maxLifetime", sb.Spec.Lifetime.MaxLifetime},
		namedDuration{"spec.lifetime.idleTimeout", sb.Spec.Lifetime.IdleTimeout},
		namedDuration{"spec.lifetime.ttlAfterFinished", sb.Spec.Lifetime.TTLAfterFinished},
		namedDuration{"spec.replenish.quietPeriod", sb.Spec.Replenish.QuietPeriod},
	)
	if bad {
		return fmt.Sprintf("%s %q is not a duration the manager can use (stored before the CRD bounded it); set it to a duration such as 1h", path, raw)
	}
	// A template the manager must not build pods from: one it cannot read, or one with what
	// the CRD's rules cannot check within their cost budget (a Secret in an env, a hostPort).
	return sb.Spec.TemplateProblem()
}
