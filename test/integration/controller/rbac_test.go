//go:build !windows

package controller

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// TestSessionUserCannotChangeQuotas: a user bound to hyperpool-session-user in a namespace
// opens sessions there, but cannot touch its quota or its classes.
func TestSessionUserCannotChangeQuotas(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	applyUserRoles(t)
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "hyperpool-session-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
	}
	create(t, binding)
	create(t, builders.AgentQuota(ns, "quota").Sessions(5).Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(0).Obj())

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "alice"}
	alice, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// RBAC bindings take effect within moments; retry the allowed call until they do.
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := alice.Create(ctx, builders.AgentSession(ns, "alices", "pool").Obj())
		return err == nil || apierrors.IsAlreadyExists(err), "alice cannot create a session yet: " + errString(err)
	})

	q := &agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "quota"}}
	raise := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"hard":{"sessions":500}}}`))
	if err := alice.Patch(ctx, q, raise); !apierrors.IsForbidden(err) {
		t.Errorf("alice raising her quota: %v, want Forbidden", err)
	}
	if err := alice.Delete(ctx, q); !apierrors.IsForbidden(err) {
		t.Errorf("alice deleting her quota: %v, want Forbidden", err)
	}
	if err := alice.Create(ctx, builders.AgentSandbox(ns, "own-class").Replicas(1).Obj()); !apierrors.IsForbidden(err) {
		t.Errorf("alice creating a class: %v, want Forbidden", err)
	}
	if err := alice.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
		t.Errorf("alice reading her quota: %v, want allowed", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// applyUserRoles creates the ClusterRoles of config/rbac/user_roles.yaml (once per run).
func applyUserRoles(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "rbac", "user_roles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		role := &rbacv1.ClusterRole{}
		if err := yaml.UnmarshalStrict(doc, role); err != nil {
			t.Fatalf("config/rbac/user_roles.yaml: %v", err)
		}
		if err := k8s.Create(context.Background(), role); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}
