package controllers

// A session's credentials: the manager never reads the Secrets a session names; the client
// delivers them through pods/exec with its caller's identity and says so in an annotation,
// which the manager mirrors into the CredentialsDelivered condition.

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// mirrorCredentials sets the CredentialsDelivered condition of a bound session from the
// client's annotation. It changes only the status in memory: the reconcile's one status
// write carries it, and a message that depends only on the spec and the annotation keeps
// an unchanged condition from costing a write.
func mirrorCredentials(s *agentsv1alpha1.AgentSession) {
	if len(s.Spec.Credentials) == 0 {
		meta.RemoveStatusCondition(&s.Status.Conditions, agentsv1alpha1.CredentialsDelivered)
		return
	}
	names := make([]string, 0, len(s.Spec.Credentials))
	for _, c := range s.Spec.Credentials {
		names = append(names, c.SecretName)
	}
	secrets := "Secret(s) " + strings.Join(names, ", ")
	value, delivered := s.Annotations[agentsv1alpha1.CredentialsDeliveredAnnotation]
	if !delivered || value == "" {
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.CredentialsDelivered,
			Status: metav1.ConditionFalse, Reason: agentsv1alpha1.ReasonCredentialsPending,
			Message: fmt.Sprintf("%s not delivered yet: the client writes them into the sandbox and then sets the annotation %s",
				secrets, agentsv1alpha1.CredentialsDeliveredAnnotation)})
		return
	}
	when := "at " + value
	if _, err := time.Parse(time.RFC3339, value); err != nil {
		when = "(the annotation's value is not an RFC 3339 time)"
	}
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.CredentialsDelivered,
		Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonCredentialsDelivered,
		Message: fmt.Sprintf("%s delivered into the sandbox by the client %s", secrets, when)})
}

// credentialsDeliveredChanged passes an update that changes the
// agents.hyperpool.io/credentials-delivered annotation, and nothing else: a heartbeat (the
// last-activity annotation) still triggers no reconcile.
func credentialsDeliveredChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		DeleteFunc: func(event.DeleteEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if e.ObjectOld == nil || e.ObjectNew == nil {
				return false
			}
			o, oldSet := e.ObjectOld.GetAnnotations()[agentsv1alpha1.CredentialsDeliveredAnnotation]
			n, newSet := e.ObjectNew.GetAnnotations()[agentsv1alpha1.CredentialsDeliveredAnnotation]
			return o != n || oldSet != newSet
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}
