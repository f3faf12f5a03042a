//go:build !windows

// Package attack tries to break hyperpool's promises to the platform team the way a tenant
// would: as an impersonated identity holding the tenant's roles, never as admin. Each test
// is an identity and a sequence of API calls; it asserts that the guarantee held, or that
// the API server refused the attack with a message naming the field.
//
// The manager runs in-process as its own service account, bound to the ClusterRole that
// `make manifests` generates, so a missing RBAC rule fails here as it would in a cluster.
// The shipped admission policies (config/policy) are installed as they are.
package attack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/framework"
	"github.com/hyperpool/hyperpool/test/testbed"
)

var (
	env *testbed.Env
	// admin is the test bed's system:masters client: for setup and for reading the truth,
	// never for an attack.
	admin client.Client
)

const (
	// managerNamespace and managerServiceAccount are the manager's identity, as
	// config/default installs it; the admission policies name it.
	managerNamespace      = "hyperpool-system"
	managerServiceAccount = "hyperpool-manager"
	build2022             = "10.0.20348"
	waitTimeout           = testbed.WaitTimeout
	// inForceTimeout bounds the wait for a new RBAC binding or admission policy to take
	// effect: the API server loads them through its informers and type-checks a policy's
	// CEL first. On a fresh, loaded 2-core machine that once took more than 10 s.
	inForceTimeout = 2 * testbed.WaitTimeout
)

// ManagerUser is the manager's user name as the API server sees it.
var managerUser = "system:serviceaccount:" + managerNamespace + ":" + managerServiceAccount

func TestMain(m *testing.M) {
	// OwnerReferencesPermissionEnforcement, on in many production clusters, makes setting
	// blockOwnerDeletion need update on the owner's finalizers: the manager's ClusterRole
	// must carry it.
	opts := testbed.Options{APIServerFlags: map[string][]string{"enable-admission-plugins": {"OwnerReferencesPermissionEnforcement"}}}
	testbed.Main(m, opts, func(e *testbed.Env) error {
		env, admin = e, e.Client
		ctx := context.Background()
		if err := framework.CreateRuntimeClasses(ctx, e); err != nil {
			return err
		}
		if _, err := e.CreateWindowsNodes(ctx, "win2022", 2, build2022); err != nil {
			return err
		}
		for _, dir := range []string{"config/rbac/role.yaml", "config/rbac/user_roles.yaml", "config/policy"} {
			if err := applyManifests(ctx, filepath.Join(e.RepoRoot, dir)); err != nil {
				return err
			}
		}
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
			return err
		}
		if err := admin.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "hyperpool-manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "hyperpool-manager"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: managerNamespace, Name: managerServiceAccount}},
		}); err != nil {
			return err
		}
		// The manager runs as its own service account, bound to the generated ClusterRole.
		return framework.StartManager(e, &rest.ImpersonationConfig{UserName: managerUser,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + managerNamespace, "system:authenticated"}},
			framework.ManagerConfig())
	})
}

// applyManifests creates every object of a YAML file, or of every YAML file in a directory
// (none when the directory does not exist).
func applyManifests(ctx context.Context, path string) error {
	files := []string{path}
	if info, err := os.Stat(path); err != nil {
		if os.IsNotExist(err) && !strings.HasSuffix(path, ".yaml") {
			return nil
		}
		return err
	} else if info.IsDir() {
		files, _ = filepath.Glob(filepath.Join(path, "*.yaml"))
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if err.Error() == "EOF" {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if err := admin.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: creating %s %s: %w", f, u.GetKind(), u.GetName(), err)
			}
		}
	}
	return nil
}

// tenant returns a client for a fresh user of namespace ns, bound there to each of the
// given ClusterRoles (e.g. "hyperpool-session-user", "edit"). It returns once RBAC lets the
// user list sessions there.
func tenant(t testing.TB, ns string, clusterRoles ...string) client.Client {
	t.Helper()
	return user(t, ns, "tenant-"+ns, clusterRoles...)
}

// classAuthor returns a client for the namespace's class author: hyperpool-platform-admin
// bound in ns alone, a careless one maybe, but not a cluster admin.
func classAuthor(t testing.TB, ns string) client.Client {
	t.Helper()
	return user(t, ns, "author-"+ns, "hyperpool-platform-admin")
}

// user returns a client for the named user, bound in ns to each of the given ClusterRoles.
func user(t testing.TB, ns, user string, clusterRoles ...string) client.Client {
	t.Helper()
	ctx := context.Background()
	for _, role := range clusterRoles {
		b := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
		if err := admin.Create(ctx, b); err != nil {
			t.Fatalf("binding %s to %s: %v", user, role, err)
		}
	}
	return impersonate(t, rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}, func(ctx context.Context, c client.Client) error {
		return c.List(ctx, &agentsv1alpha1.AgentSessionList{}, client.InNamespace(ns))
	})
}

// impersonate returns a client acting as the given identity, once ready succeeds with it
// (RBAC bindings take a moment to apply).
func impersonate(t testing.TB, who rest.ImpersonationConfig, ready func(context.Context, client.Client) error) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = who
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if ready != nil {
		eventually(t, inForceTimeout, func(ctx context.Context) (bool, string) {
			err := ready(ctx, c)
			return err == nil, fmt.Sprintf("%s not ready yet: %v", who.UserName, err)
		})
	}
	return c
}

func eventually(t testing.TB, timeout time.Duration, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, cond)
}

// mustCreate creates obj with c (admin for setup, a tenant for an attack that must pass).
func mustCreate(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// waitSession waits until the session, read by admin, satisfies cond.
func waitSession(t testing.TB, ns, name string, timeout time.Duration, what string, cond func(*agentsv1alpha1.AgentSession) bool) *agentsv1alpha1.AgentSession {
	t.Helper()
	s := &agentsv1alpha1.AgentSession{}
	eventually(t, timeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			return false, err.Error()
		}
		return cond(s), fmt.Sprintf("session %s: want %s; phase %q, pod %q, end reason %q, conditions %+v",
			name, what, s.Status.Phase, s.Status.PodName, s.Status.EndReason, s.Status.Conditions)
	})
	return s
}

func inPhase(p agentsv1alpha1.SessionPhase) func(*agentsv1alpha1.AgentSession) bool {
	return func(s *agentsv1alpha1.AgentSession) bool { return s.Status.Phase == p }
}

// sandboxPods lists, as admin, the live pods labelled for the class.
func sandboxPods(t testing.TB, ns, sandbox string) []corev1.Pod {
	t.Helper()
	return livePods(t, ns, client.MatchingLabels{agentsv1alpha1.ClassLabel: sandbox})
}

// livePods lists, as admin, the pods of ns with the labels that are not being deleted.
func livePods(t testing.TB, ns string, labels client.MatchingLabels) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := admin.List(context.Background(), list, client.InNamespace(ns), labels); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp.IsZero() {
			out = append(out, p)
		}
	}
	return out
}

// wantRefused fails unless err is the API server refusing the call with a message that
// contains every one of the given parts (the field, the fix).
func wantRefused(t testing.TB, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted, want refused", what)
		return
	}
	if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err) {
		t.Errorf("%s: %v, want Invalid or Forbidden", what, err)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: refused with %q, want a message naming %q", what, err, p)
		}
	}
}
