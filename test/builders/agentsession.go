package builders

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// AgentSessionWrapper builds an AgentSession.
type AgentSessionWrapper struct{ agentsv1alpha1.AgentSession }

// AgentSession returns a session of the class sandbox, with every limit left to the class.
func AgentSession(ns, name, sandbox string) *AgentSessionWrapper {
	return &AgentSessionWrapper{agentsv1alpha1.AgentSession{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       agentsv1alpha1.AgentSessionSpec{SandboxName: sandbox},
	}}
}

// Obj returns a copy of the session built so far.
func (w *AgentSessionWrapper) Obj() *agentsv1alpha1.AgentSession { return w.DeepCopy() }

// UID sets metadata.uid, for a session that never reaches an API server (a fake client
// keeps it).
func (w *AgentSessionWrapper) UID(uid types.UID) *AgentSessionWrapper {
	w.ObjectMeta.UID = uid
	return w
}

// Created sets metadata.creationTimestamp, which orders the quota's FIFO queue.
func (w *AgentSessionWrapper) Created(at time.Time) *AgentSessionWrapper {
	w.CreationTimestamp = metav1.NewTime(at)
	return w
}

// Annotation adds an annotation (for one, agentsv1alpha1.LastActivityAnnotation, the
// heartbeat).
func (w *AgentSessionWrapper) Annotation(key, value string) *AgentSessionWrapper {
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[key] = value
	return w
}

// Finalizer adds a finalizer.
func (w *AgentSessionWrapper) Finalizer(f string) *AgentSessionWrapper {
	w.Finalizers = append(w.Finalizers, f)
	return w
}

// MaxLifetime sets spec.maxLifetime.
func (w *AgentSessionWrapper) MaxLifetime(d time.Duration) *AgentSessionWrapper {
	w.Spec.MaxLifetime = Duration(d)
	return w
}

// IdleTimeout sets spec.idleTimeout.
func (w *AgentSessionWrapper) IdleTimeout(d time.Duration) *AgentSessionWrapper {
	w.Spec.IdleTimeout = Duration(d)
	return w
}

// TTLAfterFinished sets spec.ttlAfterFinished.
func (w *AgentSessionWrapper) TTLAfterFinished(d time.Duration) *AgentSessionWrapper {
	w.Spec.TTLAfterFinished = Duration(d)
	return w
}

// StartTimeout sets spec.startTimeout: how long the session may wait for its sandbox.
func (w *AgentSessionWrapper) StartTimeout(d time.Duration) *AgentSessionWrapper {
	w.Spec.StartTimeout = Duration(d)
	return w
}

// StartPolicy sets spec.startPolicy: PreferWarm or RequireWarm.
func (w *AgentSessionWrapper) StartPolicy(p agentsv1alpha1.StartPolicy) *AgentSessionWrapper {
	w.Spec.StartPolicy = p
	return w
}

// User sets spec.user.
func (w *AgentSessionWrapper) User(user string) *AgentSessionWrapper {
	w.Spec.User = user
	return w
}

// Phase sets status.phase.
func (w *AgentSessionWrapper) Phase(p agentsv1alpha1.SessionPhase) *AgentSessionWrapper {
	w.Status.Phase = p
	return w
}

// BoundTo sets status.podName, status.preciseBoundTime and status.boundTime: the session
// holds pod since at, stored as the manager stores it (to the microsecond, and rounded down
// to the second for display).
func (w *AgentSessionWrapper) BoundTo(pod string, at time.Time) *AgentSessionWrapper {
	w.Status.PodName = pod
	w.Status.PreciseBoundTime = &metav1.MicroTime{Time: at.Truncate(time.Microsecond)}
	w.Status.BoundTime = &metav1.Time{Time: at.Truncate(time.Second)}
	return w
}

// Condition sets a status condition.
func (w *AgentSessionWrapper) Condition(c metav1.Condition) *AgentSessionWrapper {
	meta.SetStatusCondition(&w.Status.Conditions, c)
	return w
}

// QuotaReserved sets the QuotaReserved condition True: the quota admitted the session.
func (w *AgentSessionWrapper) QuotaReserved() *AgentSessionWrapper {
	return w.Condition(metav1.Condition{Type: agentsv1alpha1.QuotaReserved,
		Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonQuotaReserved})
}
