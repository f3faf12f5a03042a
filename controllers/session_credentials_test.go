package controllers

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// The credentials-delivered annotation wakes the session; a heartbeat (or any other
// annotation) does not.
func TestCredentialsDeliveredChangedPassesOnlyItsAnnotation(t *testing.T) {
	p := credentialsDeliveredChanged()
	const at, later = "2026-01-02T15:04:05Z", "2026-01-02T15:05:05Z"
	session := func(annotations ...string) *agentsv1alpha1.AgentSession {
		w := builders.AgentSession("ns", "s", "pool")
		for i := 0; i+1 < len(annotations); i += 2 {
			w.Annotation(annotations[i], annotations[i+1])
		}
		return w.Obj()
	}
	for _, tc := range []struct {
		name     string
		old, new *agentsv1alpha1.AgentSession
		want     bool
	}{
		{"set", session(), session(agentsv1alpha1.CredentialsDeliveredAnnotation, at), true},
		{"changed", session(agentsv1alpha1.CredentialsDeliveredAnnotation, at), session(agentsv1alpha1.CredentialsDeliveredAnnotation, later), true},
		{"removed", session(agentsv1alpha1.CredentialsDeliveredAnnotation, at), session(), true},
		{"set empty", session(), session(agentsv1alpha1.CredentialsDeliveredAnnotation, ""), true},
		{"heartbeat", session(agentsv1alpha1.LastActivityAnnotation, at), session(agentsv1alpha1.LastActivityAnnotation, later), false},
		{"heartbeat beside a delivery", session(agentsv1alpha1.CredentialsDeliveredAnnotation, at, agentsv1alpha1.LastActivityAnnotation, at),
			session(agentsv1alpha1.CredentialsDeliveredAnnotation, at, agentsv1alpha1.LastActivityAnnotation, later), false},
		{"other annotation", session(), session("example.com/note", "x"), false},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: Update = %v, want %v", tc.name, got, tc.want)
		}
	}
	if p.Create(event.CreateEvent{Object: session()}) || p.Delete(event.DeleteEvent{Object: session()}) {
		t.Error("create or delete passed: GenerationChangedPredicate already does")
	}
}

// The condition follows the spec and the annotation alone, so an unchanged session makes
// no status write.
func TestMirrorCredentials(t *testing.T) {
	withCreds := func(annotations ...string) *agentsv1alpha1.AgentSession {
		w := builders.AgentSession("ns", "s", "pool")
		for i := 0; i+1 < len(annotations); i += 2 {
			w.Annotation(annotations[i], annotations[i+1])
		}
		s := w.Obj()
		s.Spec.Credentials = []agentsv1alpha1.SessionCredential{{SecretName: "git-token"}, {SecretName: "cloud"}}
		return s
	}

	none := builders.AgentSession("ns", "s", "pool").Obj()
	mirrorCredentials(none)
	if len(none.Status.Conditions) != 0 {
		t.Errorf("no credentials: conditions %+v, want none", none.Status.Conditions)
	}

	pending := withCreds()
	mirrorCredentials(pending)
	c := meta.FindStatusCondition(pending.Status.Conditions, agentsv1alpha1.CredentialsDelivered)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != agentsv1alpha1.ReasonCredentialsPending || !strings.Contains(c.Message, "git-token, cloud") {
		t.Fatalf("no annotation: %+v, want False/Pending naming the Secrets", c)
	}
	again := pending.Status.DeepCopy()
	mirrorCredentials(pending)
	if !sameStatus(again, &pending.Status) {
		t.Errorf("a second mirror changed the status: %+v -> %+v", again.Conditions, pending.Status.Conditions)
	}

	delivered := withCreds(agentsv1alpha1.CredentialsDeliveredAnnotation, "2026-01-02T15:04:05Z")
	delivered.Status.Conditions = pending.Status.Conditions
	before := delivered.Status.DeepCopy()
	mirrorCredentials(delivered)
	c = meta.FindStatusCondition(delivered.Status.Conditions, agentsv1alpha1.CredentialsDelivered)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != agentsv1alpha1.ReasonCredentialsDelivered ||
		!strings.Contains(c.Message, "git-token, cloud") || !strings.Contains(c.Message, "2026-01-02T15:04:05Z") {
		t.Fatalf("annotation set: %+v, want True/Delivered naming the Secrets and the time", c)
	}
	if sameStatus(before, &delivered.Status) {
		t.Error("the delivery did not change the status: it would not be written")
	}

	junk := withCreds(agentsv1alpha1.CredentialsDeliveredAnnotation, strings.Repeat("x", 4096))
	mirrorCredentials(junk)
	c = meta.FindStatusCondition(junk.Status.Conditions, agentsv1alpha1.CredentialsDelivered)
	if c == nil || c.Status != metav1.ConditionTrue || strings.Contains(c.Message, "xxxx") {
		t.Errorf("a value that is not a time: %+v, want True without the value in the message", c)
	}
}
