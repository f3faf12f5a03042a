//go:build !windows

package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	hpclient "github.com/hyperpool/hyperpool/pkg/client"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// credentialsClientAs returns a client impersonating user, bound in ns to the given ClusterRoles.
func credentialsClientAs(t *testing.T, ns, user string, clusterRoles ...string) *hpclient.Client {
	t.Helper()
	for _, role := range clusterRoles {
		b := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
		if err := env.Client.Create(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := hpclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// credentialsAttach attaches c to the Ready session, waiting for RBAC to apply.
func credentialsAttach(t *testing.T, c *hpclient.Client, ns, name string) *hpclient.Session {
	t.Helper()
	var s *hpclient.Session
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		var err error
		s, err = c.Attach(ctx, ns, name, linux(hpclient.Options{}))
		return err == nil, fmt.Sprintf("attach to %s: %v", name, err)
	})
	return s
}

// TestDeliverCredentials: a session names two Secrets. A caller who cannot read them gets
// the API server's Forbidden and nothing reaches the sandbox; the agent backend
// (hyperpool-agent-backend) delivers the named keys as files in their target directories,
// through exec stdin, and the session's CredentialsDelivered condition turns True.
func TestDeliverCredentials(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	ctx := t.Context()
	const token = "ghp_credential-value-7d2a"
	for _, secret := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "git-token"}, Data: map[string][]byte{"token": []byte(token), "unused": []byte("not asked for")}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cloud"}, Data: map[string][]byte{"config": []byte("[default]\nregion = x\n"), "key": {0, 1, 2, 255}}},
	} {
		if err := env.Client.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	session := builders.AgentSession(ns, "creds", "win").Obj()
	session.Spec.Credentials = []agentsv1alpha1.SessionCredential{
		{SecretName: "git-token", Keys: []string{"token"}, TargetDir: "git"},
		{SecretName: "cloud", TargetDir: "cloud/aws"},
	}
	if err := env.Client.Create(ctx, session); err != nil {
		t.Fatal(err)
	}
	var pod string
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		s, err := getSession(ctx, ns, "creds")
		if err != nil {
			return false, err.Error()
		}
		pod = s.Status.PodName
		return s.Status.Phase == agentsv1alpha1.SessionReady, fmt.Sprintf("session phase %q", s.Status.Phase)
	})
	root := env.PodDir(ns, pod)

	// Without get on Secrets: refused, nothing written, nothing announced.
	reader := credentialsAttach(t, credentialsClientAs(t, ns, "no-secrets-"+ns, "hyperpool-session-user"), ns, "creds")
	err := reader.DeliverCredentials(ctx, "")
	t.Logf("without get on secrets: %v", err)
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "git-token") || !strings.Contains(err.Error(), "nothing was delivered") {
		t.Errorf("delivery without get on secrets: %v, want Forbidden naming git-token and that nothing was delivered", err)
	}
	for _, p := range []string{"git", "cloud"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists in the sandbox after a refused delivery (%v)", p, err)
		}
	}
	if s, err := getSession(ctx, ns, "creds"); err != nil || s.Annotations[agentsv1alpha1.CredentialsDeliveredAnnotation] != "" {
		t.Errorf("annotation after a refused delivery: %v %v", s.Annotations, err)
	}

	// The agent backend.
	backend := credentialsAttach(t, credentialsClientAs(t, ns, "backend-"+ns, "hyperpool-agent-backend"), ns, "creds")
	t.Cleanup(func() { _ = backend.Close(context.Background(), hpclient.CloseOptions{}) })
	if err := backend.DeliverCredentials(ctx, ""); err != nil {
		t.Fatalf("deliver as hyperpool-agent-backend: %v", err)
	}
	for file, want := range map[string]string{"git/token": token, "cloud/aws/config": "[default]\nregion = x\n", "cloud/aws/key": "\x00\x01\x02\xff"} {
		got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil || string(got) != want {
			t.Errorf("%s in the sandbox: %q, %v; want %q", file, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "git", "unused")); !os.IsNotExist(err) {
		t.Errorf("a key not named in keys was delivered (%v)", err)
	}
	assertAuditHasNo(t, pod, token)
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		s, err := getSession(ctx, ns, "creds")
		if err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.CredentialsDelivered)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == agentsv1alpha1.ReasonCredentialsDelivered,
			fmt.Sprintf("CredentialsDelivered %+v, annotation %q", c, s.Annotations[agentsv1alpha1.CredentialsDeliveredAnnotation])
	})
}

// TestOpenDeliversCredentials: Open with Options.Credentials creates the session naming
// them and delivers them before it returns. A caller who cannot read the Secret gets an
// error from Open, and the session it created is deleted.
func TestOpenDeliversCredentials(t *testing.T) {
	t.Parallel()
	ns := newClass(t, "win", 1)
	ctx := t.Context()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "git-token"}, Data: map[string][]byte{"token": []byte("ghp_open-7f1c")}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	creds := []agentsv1alpha1.SessionCredential{{SecretName: "git-token", TargetDir: "git"}}

	reader := credentialsClientAs(t, ns, "no-secrets-"+ns, "hyperpool-session-user")
	_, err := reader.Open(ctx, ns, "win", linux(hpclient.Options{Name: "refused", Credentials: creds}))
	if err == nil || !strings.Contains(err.Error(), "git-token") {
		t.Fatalf("Open with credentials the caller cannot read: %v, want an error naming git-token", err)
	}
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_, err := getSession(ctx, ns, "refused")
		return apierrors.IsNotFound(err), fmt.Sprintf("the session of a failed Open still exists (%v)", err)
	})

	backend := credentialsClientAs(t, ns, "backend-"+ns, "hyperpool-agent-backend")
	var sess *hpclient.Session
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		// The pool refills behind the refused session's pod: wait for a sandbox.
		sess, err = backend.Open(ctx, ns, "win", linux(hpclient.Options{Name: "delivered", Credentials: creds}))
		return err == nil, fmt.Sprintf("Open with credentials: %v", err)
	})
	t.Cleanup(func() { _ = sess.Close(context.Background(), hpclient.CloseOptions{}) })
	s, err := getSession(ctx, ns, "delivered")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(env.PodDir(ns, s.Status.PodName), "git", "token"))
	if err != nil || string(got) != "ghp_open-7f1c" {
		t.Errorf("git/token in the sandbox: %q, %v", got, err)
	}
	if s.Annotations[agentsv1alpha1.CredentialsDeliveredAnnotation] == "" {
		t.Error("Open returned before the delivery was announced")
	}
}

// assertAuditHasNo checks kube-apiserver's audit log of pods/exec requests: it recorded the
// pod's execs (the log works), and value appears in none of them (a credential travels on
// stdin, never in the exec's arguments, which the audit log keeps).
func assertAuditHasNo(t *testing.T, pod, value string) {
	t.Helper()
	data, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatalf("reading the audit log: %v", err)
	}
	execs := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"subresource":"exec"`) && strings.Contains(line, pod) {
			execs++
		}
	}
	if execs == 0 {
		t.Fatalf("the audit log holds no pods/exec request for pod %s: the check below would prove nothing", pod)
	}
	if strings.Contains(string(data), value) {
		t.Errorf("a credential value is in kube-apiserver's audit log of pods/exec requests")
	}
}
