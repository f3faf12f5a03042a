//go:build !windows

package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// Credentials come with the session: it names Secrets, the client delivers their keys
// through pods/exec with its caller's identity and says so in an annotation, and the
// manager mirrors that into the CredentialsDelivered condition. No Secret value is ever in
// the session or a pod spec.

// credentialsCondition returns the session's CredentialsDelivered condition, or nil.
func credentialsCondition(s *agentsv1alpha1.AgentSession) *metav1.Condition {
	return meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.CredentialsDelivered)
}

// TestCredentialsDeliveredIsMirroredFromTheAnnotation: an agent backend (the
// hyperpool-agent-backend role) opens a session that names a Secret. Once bound, the
// session says Pending; the backend can read the Secret (the client delivers it with this
// identity) and sets the credentials-delivered annotation; the manager mirrors it at once
// (the annotation alone triggers the reconcile) as Delivered, naming the Secret. The
// Secret's value is nowhere in the session or in a pod of the namespace, warm or bound. A
// session that names no credentials has no such condition.
func TestCredentialsDeliveredIsMirroredFromTheAnnotation(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	ctx := context.Background()
	const value = "s3cret-token-value-9f1c2e"
	mustCreate(t, admin, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "git-token"},
		StringData: map[string]string{"token": value, "other": value + "-other"}})
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(2).Obj())
	backend := tenant(t, ns, "hyperpool-agent-backend")
	userOnly := user(t, ns, "session-user-"+ns, "hyperpool-session-user") // tenant(...) would be the same user

	// The client reads Secrets with its caller's identity: the role grants it, session-user
	// alone does not.
	if err := backend.Get(ctx, client.ObjectKey{Namespace: ns, Name: "git-token"}, &corev1.Secret{}); err != nil {
		t.Errorf("hyperpool-agent-backend cannot get the Secret it would deliver: %v", err)
	}
	if err := userOnly.Get(ctx, client.ObjectKey{Namespace: ns, Name: "git-token"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("hyperpool-session-user got the Secret: %v, want Forbidden", err)
	}

	// And it can run commands: pods/exec (create, and get for an exec over WebSocket) and
	// pods get.
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "exec"},
		{Namespace: ns, Verb: "get", Resource: "pods", Subresource: "exec"},
		{Namespace: ns, Verb: "get", Resource: "pods"},
	} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}
		if err := backend.Create(ctx, review); err != nil {
			t.Fatal(err)
		}
		if !review.Status.Allowed {
			t.Errorf("hyperpool-agent-backend may not %s %s/%s", ra.Verb, ra.Resource, ra.Subresource)
		}
	}

	s := builders.AgentSession(ns, "with", "pool").MaxLifetime(time.Hour).IdleTimeout(time.Hour).Obj()
	s.Spec.Credentials = []agentsv1alpha1.SessionCredential{{SecretName: "git-token", Keys: []string{"token"}, TargetDir: "git"}}
	mustCreate(t, backend, s)
	mustCreate(t, backend, builders.AgentSession(ns, "without", "pool").Obj())

	waitSession(t, ns, "with", waitTimeout, "Ready with CredentialsDelivered False/Pending", func(s *agentsv1alpha1.AgentSession) bool {
		c := credentialsCondition(s)
		return s.Status.Phase == agentsv1alpha1.SessionReady && c != nil &&
			c.Status == metav1.ConditionFalse && c.Reason == agentsv1alpha1.ReasonCredentialsPending
	})
	without := waitSession(t, ns, "without", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if c := credentialsCondition(without); c != nil {
		t.Errorf("a session without credentials has the condition %+v", c)
	}

	// The client has written the files; it says so.
	at := time.Now().UTC().Format(time.RFC3339)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, agentsv1alpha1.CredentialsDeliveredAnnotation, at)
	if err := backend.Patch(ctx, &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "with"}},
		client.RawPatch(client.Merge.Type(), []byte(patch))); err != nil {
		t.Fatalf("setting %s as the agent backend: %v", agentsv1alpha1.CredentialsDeliveredAnnotation, err)
	}
	// Well within the session's hour-long deadlines, the next requeue without the
	// annotation's own trigger.
	got := waitSession(t, ns, "with", waitTimeout, "CredentialsDelivered True/Delivered", func(s *agentsv1alpha1.AgentSession) bool {
		c := credentialsCondition(s)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == agentsv1alpha1.ReasonCredentialsDelivered
	})
	if c := credentialsCondition(got); !strings.Contains(c.Message, "git-token") || !strings.Contains(c.Message, at) {
		t.Errorf("condition message %q, want it to name the Secret git-token and the time %s", c.Message, at)
	}
	if r := meta.FindStatusCondition(got.Status.Conditions, agentsv1alpha1.SessionReadyCondition); r == nil || r.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition %+v after the mirror, want True", r)
	}

	// No value anywhere: the sessions, and every pod of the namespace (warm and bound).
	for _, name := range []string{"with", "without"} {
		cur := &agentsv1alpha1.AgentSession{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cur); err != nil {
			t.Fatal(err)
		}
		noValue(t, "session "+name, cur, value)
	}
	pods := &corev1.PodList{}
	if err := admin.List(ctx, pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) < 3 {
		t.Errorf("%d pods in the namespace, want the two bound and a warm one", len(pods.Items))
	}
	for i := range pods.Items {
		noValue(t, "pod "+pods.Items[i].Name, &pods.Items[i], value)
		if strings.Contains(mustMarshal(t, pods.Items[i].Spec), "git-token") {
			t.Errorf("pod %s's spec names the Secret git-token", pods.Items[i].Name)
		}
	}
}

// TestCredentialsCannotBeChangedOrEscapeTheSessionDirectory: the session's record of what
// it got is immutable, and a targetDir cannot leave the sandbox's session directory.
func TestCredentialsCannotBeChangedOrEscapeTheSessionDirectory(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	ctx := context.Background()
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(0).Obj())
	backend := tenant(t, ns, "hyperpool-agent-backend")

	for _, dir := range []string{"../../Windows/System32", "git/../..", "..", "/etc", `C:/Users`, `..\\..\\Windows`} {
		m := fmt.Sprintf(`{"apiVersion":"agents.hyperpool.io/v1alpha1","kind":"AgentSession","metadata":{"name":"escape"},"spec":{"sandboxName":"pool","credentials":[{"secretName":"git-token","targetDir":%q}]}}`, dir)
		wantRefused(t, "targetDir "+dir, createRaw(ctx, backend, ns, m), "spec.credentials[0].targetDir")
	}

	s := builders.AgentSession(ns, "s", "pool").Obj()
	s.Spec.Credentials = []agentsv1alpha1.SessionCredential{{SecretName: "git-token"}}
	mustCreate(t, backend, s)
	plain := builders.AgentSession(ns, "plain", "pool").Obj()
	mustCreate(t, backend, plain)
	for _, tc := range []struct{ what, name, patch string }{
		{"another Secret", "s", `{"spec":{"credentials":[{"secretName":"cloud-admin"}]}}`},
		{"a wider targetDir", "s", `{"spec":{"credentials":[{"secretName":"git-token","targetDir":"other"}]}}`},
		{"credentials removed", "s", `{"spec":{"credentials":null}}`},
		{"credentials added", "plain", `{"spec":{"credentials":[{"secretName":"git-token"}]}}`},
	} {
		err := backend.Patch(ctx, &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name}},
			client.RawPatch(client.Merge.Type(), []byte(tc.patch)))
		wantRefused(t, tc.what, err, "spec.credentials", "immutable")
	}
	got := &agentsv1alpha1.AgentSession{}
	if err := admin.Get(ctx, client.ObjectKeyFromObject(s), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Credentials) != 1 || got.Spec.Credentials[0].SecretName != "git-token" || got.Spec.Credentials[0].TargetDir != "" {
		t.Errorf("stored credentials %+v, want git-token alone", got.Spec.Credentials)
	}
}

// noValue fails if obj's JSON holds the Secret's value, in clear or base64.
func noValue(t testing.TB, what string, obj any, value string) {
	t.Helper()
	js := mustMarshal(t, obj)
	b64, _ := json.Marshal([]byte(value))
	if strings.Contains(js, value) || strings.Contains(js, strings.Trim(string(b64), `"`)) {
		t.Errorf("%s holds the Secret's value: %s", what, js)
	}
}

func mustMarshal(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
