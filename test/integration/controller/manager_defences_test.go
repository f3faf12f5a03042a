//go:build !windows

package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/test/builders"
)

// The manager's own defences behind the admission policies. This package installs no
// policy, so each test makes, as admin, the change a policy would refuse a tenant: a pod
// tampered before the policy was installed, or with it turned off.

// TestTamperedWarmPodIsDestroyedNotBound: a warm pod whose container image was changed (a
// JSON patch, accepted before the pod-spec policy existed) is destroyed at bind, never
// handed to a session, and the session is served all the same. Before, that very pod was
// handed to the next session.
func TestTamperedWarmPodIsDestroyedNotBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	waitPoolReady(t, ns, "pool", 1, waitTimeout)
	tampered := warmPods(t, ns, "pool")[0]
	patch := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/containers/0/image","value":"attacker.example/evil:1"}]`))
	if err := k8s.Patch(ctx, &tampered, patch); err != nil {
		t.Fatalf("changing the warm pod's image as admin: %v", err)
	}
	// Still a Ready warm pod: exactly what a bind would take.
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		p := &corev1.Pod{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&tampered), p); err != nil {
			return false, err.Error()
		}
		return podstate.Ready(p) && p.Spec.Containers[0].Image == "attacker.example/evil:1",
			fmt.Sprintf("pod %s: Ready %v, image %s", p.Name, podstate.Ready(p), p.Spec.Containers[0].Image)
	})

	create(t, builders.AgentSession(ns, "s", "pool").Obj())
	s := waitSession(t, ns, "s", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if s.Status.PodName == tampered.Name {
		t.Fatalf("the session was bound to the tampered pod %s", tampered.Name)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		p := &corev1.Pod{}
		err := k8s.Get(ctx, client.ObjectKeyFromObject(&tampered), p)
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		if p.Labels[agentsv1alpha1.SessionLabel] != "" {
			t.Fatalf("the tampered pod was bound to session %s", p.Labels[agentsv1alpha1.SessionLabel])
		}
		return !p.DeletionTimestamp.IsZero(), fmt.Sprintf("tampered pod %s not deleted", p.Name)
	})
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		events := &eventsv1.EventList{}
		if err := k8s.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Reason == controllers.ReasonTamperedSandbox && e.Regarding.Name == "pool" && strings.Contains(e.Note, tampered.Name) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no %s event on the class naming %s", controllers.ReasonTamperedSandbox, tampered.Name)
	})
}

// TestForeignControllerDoesNotKeepASandboxPod: a sandbox pod that lost hyperpool's owner
// reference (an orphaning delete, while the manager was down) and then got a controller
// reference to something else (a tenant's ConfigMap) is destroyed all the same: whether the
// manager destroys a sandbox pod rests on hyperpool's labels and owners alone. Before, a
// foreign controller made the manager skip it, and its VM ran on outside any session.
func TestForeignControllerDoesNotKeepASandboxPod(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(0).Obj())
	// The owner exists, so the garbage collector keeps its dependents.
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenants-own"}}
	create(t, owner)
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{
		{"pod-of-a-deleted-session", map[string]string{agentsv1alpha1.ClassLabel: "pool", agentsv1alpha1.SessionLabel: "gone"}},
		{"warm-pod-of-the-class", map[string]string{agentsv1alpha1.ClassLabel: "pool"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := builders.Pod(ns, tc.name).Labels(tc.labels).Windows().Container("sandbox", "servercore").Obj()
			pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, corev1.SchemeGroupVersion.WithKind("ConfigMap"))}
			pod.OwnerReferences[0].BlockOwnerDeletion = nil
			create(t, pod)
			eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
				p := &corev1.Pod{}
				err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), p)
				if apierrors.IsNotFound(err) {
					return true, ""
				}
				if err != nil {
					return false, err.Error()
				}
				return !p.DeletionTimestamp.IsZero(), fmt.Sprintf("pod %s with a foreign controller is still there, not deleted", p.Name)
			})
		})
	}
}

// TestCacheKeepsOnlyTheMetadataTheManagerReads: the manager's cache (CacheOptions, as the
// manager is started with) keeps, of a sandbox pod and a session, only the labels and
// annotations the manager reads. A tenant's 200 KiB annotation and its own label are not
// in it; the keys the manager reads are.
func TestCacheKeepsOnlyTheMetadataTheManagerReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	waitPoolReady(t, ns, "pool", 1, waitTimeout)
	pod := warmPods(t, ns, "pool")[0]
	create(t, builders.AgentSession(ns, "s", "pool").StartPolicy(agentsv1alpha1.RequireWarm).Obj())

	bloat := strings.Repeat("x", 200*1024)
	addForeign := fmt.Sprintf(`{"metadata":{"labels":{"example.com/tenant":"mine"},"annotations":{"example.com/bloat":%q,%q:"2026-01-01T00:00:00Z"}}}`,
		bloat, agentsv1alpha1.LastActivityAnnotation)
	s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s"}}
	for _, o := range []client.Object{&pod, s} {
		if err := k8s.Patch(ctx, o, client.RawPatch(types.MergePatchType, []byte(addForeign))); err != nil {
			t.Fatalf("adding a foreign label and annotation to %s as admin: %v", o.GetName(), err)
		}
	}

	opts := controllers.CacheOptions()
	opts.Scheme = env.Scheme
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	c, err := cache.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = c.Start(cctx) }()
	if !c.WaitForCacheSync(cctx) {
		t.Fatal("the cache did not sync")
	}
	for _, tc := range []struct {
		obj  client.Object
		kept string // an annotation the manager reads, which the cache must keep
	}{
		{&corev1.Pod{}, "agents.hyperpool.io/spec-digest"},
		{&agentsv1alpha1.AgentSession{}, agentsv1alpha1.LastActivityAnnotation},
	} {
		key := types.NamespacedName{Namespace: ns, Name: pod.Name}
		if _, ok := tc.obj.(*agentsv1alpha1.AgentSession); ok {
			key.Name = "s"
		}
		eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
			if err := c.Get(ctx, key, tc.obj); err != nil {
				return false, err.Error()
			}
			_, kept := tc.obj.GetAnnotations()[tc.kept]
			return kept, fmt.Sprintf("cached %T %s has no %s", tc.obj, key.Name, tc.kept)
		})
		if v, ok := tc.obj.GetAnnotations()["example.com/bloat"]; ok {
			t.Errorf("cached %T %s keeps the tenant's annotation example.com/bloat (%d bytes)", tc.obj, key.Name, len(v))
		}
		if _, ok := tc.obj.GetLabels()["example.com/tenant"]; ok {
			t.Errorf("cached %T %s keeps the tenant's label example.com/tenant", tc.obj, key.Name)
		}
	}
}
