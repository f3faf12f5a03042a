//go:build !windows

package controller

// The manager's own accounting holds whatever was done to a sandbox pod's metadata or
// delete options. The edits here are made as admin to simulate what a tenant with `edit`
// could do where the shipped admission policies are not installed (or to a pod made before
// they were): the policies refuse them to a tenant (test/attack), and these tests check
// that the manager does not depend on that.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

const (
	vmMemoryAnnotation    = "io.microsoft.virtualmachine.computetopology.memory.sizeinmb"
	vmProcessorAnnotation = "io.microsoft.virtualmachine.computetopology.processor.count"
	footprintAnnotation   = "agents.hyperpool.io/footprint"
	// period (kwok's pod-delete stage would delete it at once, with a grace of 0).

)

// TestStrippedFootprintKeepsTheClassCharge: a bound pod stripped of its VM-sizing
// annotations and of the footprint the manager recorded (by admin: a tenant's edit where the
// agent-metadata policy is not installed) is still charged its class's footprint, by the
// pool's status and by the quota.
func TestStrippedFootprintKeepsTheClassCharge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").Sessions(5).Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj()) // 1Gi limit: 1536Mi, 2 vCPUs per VM
	create(t, builders.AgentSession(ns, "s", "pool").Obj())
	s := waitSession(t, ns, "s", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

	bound := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: s.Status.PodName}, bound); err != nil {
		t.Fatal(err)
	}
	if bound.Annotations[footprintAnnotation] == "" {
		t.Fatalf("bound pod %s has no %s annotation: %v", bound.Name, footprintAnnotation, bound.Annotations)
	}
	strip := fmt.Sprintf(`{"metadata":{"annotations":{%q:null,%q:null,%q:null}}}`, vmMemoryAnnotation, vmProcessorAnnotation, footprintAnnotation)
	if err := k8s.Patch(ctx, bound, client.RawPatch(types.MergePatchType, []byte(strip))); err != nil {
		t.Fatalf("stripping the sizing annotations: %v", err)
	}

	// A probe that orders the manager's view after the strip: the pool grows to 2 warm pods,
	// and a status that counts the second one was computed from a pod cache that had seen it,
	// so (one pod watch, in order) the strip before it too.
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Patch(ctx, sb, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":2}}`))); err != nil {
		t.Fatal(err)
	}
	three := resource.MustParse("4608Mi") // the bound VM and two warm ones
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb); err != nil {
			return false, err.Error()
		}
		return sb.Status.Replicas == 2, fmt.Sprintf("pool status replicas %d, want 2", sb.Status.Replicas)
	})
	if f := sb.Status.Footprint; f == nil || f.Total.Memory.Cmp(three) != 0 || f.Total.VCPUs != 6 {
		t.Errorf("pool footprint total %+v with 2 warm pods and the stripped bound one; want memory %s, 6 vCPUs", f, three.String())
	}

	// The quota is measured again after the pool's cache saw the strip: its status, once it
	// observed a later generation, charges the stripped pod its class's footprint.
	q := &agentsv1alpha1.AgentQuota{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "quota"}, q); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Patch(ctx, q, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"maxQueued":7}}`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "quota"}, q); err != nil {
			return false, err.Error()
		}
		used := q.Status.Used
		ok := q.Status.ObservedGeneration == q.Generation && ptr.Deref(used.WarmSandboxes, 0) == 2 &&
			used.Memory != nil && used.Memory.Cmp(three) == 0 && used.CPU != nil && used.CPU.Value() == 6
		return ok, fmt.Sprintf("quota status (generation %d of %d): warm %v, memory %v, cpu %v; want 2 warm, %s, 6 (the stripped pod charged as its class)",
			q.Status.ObservedGeneration, q.Generation, ptr.Deref(used.WarmSandboxes, -1), used.Memory, used.CPU, three.String())
	})
}

// TestLongGraceDeleteIsCutToTheClassGrace: a bound pod deleted with a grace period of a
// year (by admin: a tenant's delete where the sandbox-pod policy is not installed) is
// deleted again by the manager with its class's grace period, and the manager says so in a
// Warning event. The pod runs on a node that kwok does not manage, so nothing but the
// manager changes its deletion.
func TestLongGraceDeleteIsCutToTheClassGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	node := env.CreateUnmanagedWindowsNode(t, build2022)
	const classGrace = int64(20)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(0).
		NodeSelector(testbed.UnmanagedNodeLabel, node).
		Toleration(corev1.Toleration{Operator: corev1.TolerationOpExists}).
		PodSpec(func(s *corev1.PodSpec) { s.TerminationGracePeriodSeconds = ptr.To(classGrace) }).Obj())
	create(t, builders.AgentSession(ns, "s", "pool").Obj())
	s := waitSession(t, ns, "s", waitTimeout, "bound", func(s *agentsv1alpha1.AgentSession) bool { return s.Status.PodName != "" })

	pod := &corev1.Pod{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: s.Status.PodName}, pod); err != nil {
			return false, err.Error()
		}
		// An unscheduled pod is deleted at once, whatever the grace: the attack needs a node.
		return pod.Spec.NodeName == node, fmt.Sprintf("pod %s on node %q, want %s", pod.Name, pod.Spec.NodeName, node)
	})
	t.Cleanup(func() { // nothing runs the pod: delete it for good
		_ = k8s.Delete(context.Background(), pod.DeepCopy(), client.GracePeriodSeconds(0))
	})

	const year = int64(365 * 24 * 3600)
	if err := k8s.Delete(ctx, pod.DeepCopy(), client.GracePeriodSeconds(year)); err != nil {
		t.Fatalf("deleting pod %s with a grace of a year: %v", pod.Name, err)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		grace := ptr.Deref(pod.DeletionGracePeriodSeconds, -1)
		return grace == classGrace, fmt.Sprintf("pod %s: deletion grace %ds, want the class's %ds", pod.Name, grace, classGrace)
	})
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		events := &eventsv1.EventList{}
		if err := k8s.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Reason == "GracePeriodShortened" && e.Type == corev1.EventTypeWarning && e.Regarding.Name == pod.Name &&
				strings.Contains(e.Note, fmt.Sprintf("grace period of %ds", year)) && strings.Contains(e.Note, fmt.Sprintf("with %ds", classGrace)) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no Warning GracePeriodShortened event for pod %s among %d events", pod.Name, len(events.Items))
	})
}

// TestPoolReplacesAtMostItsTargetWhileVMsShutDown: warm pods deleted (by admin here; a
// tenant with `edit` may delete pods) are replaced at once, but while their VMs still shut
// down (a finalizer holds each pod, in place of a long shutdown) the pool starts no more
// than its target's worth of replacements: deleting the replacements too makes it wait for
// the first ones to go, and then it refills.
func TestPoolReplacesAtMostItsTargetWhileVMsShutDown(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(2).Obj())
	waitPoolReady(t, ns, "pool", 2, waitTimeout)

	deleteHeld := func() {
		t.Helper()
		for _, p := range warmPods(t, ns, "pool") {
			holdTerminating(t, &p)
			if err := k8s.Delete(context.Background(), &p); err != nil {
				t.Fatalf("deleting warm pod %s: %v", p.Name, err)
			}
		}
	}
	deleteHeld() // 2 VMs shutting down: replaced at once
	waitPoolReady(t, ns, "pool", 2, waitTimeout)
	deleteHeld() // 4 VMs shutting down, twice the target: no more replacements

	// Until the pool's status shows no warm pod (its cache saw both deletions; a reconcile
	// that creates replacements does so before it writes its status), and then, no live
	// warm pod may appear: each would be a replacement beyond the target's worth.
	sb := &agentsv1alpha1.AgentSandbox{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if warm := warmPods(t, ns, "pool"); len(warm) != 0 {
			t.Fatalf("%d warm pods created while 4 VMs of a pool of 2 still shut down, want none", len(warm))
		}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb); err != nil {
			return false, err.Error()
		}
		return sb.Status.Replicas == 0, fmt.Sprintf("pool status replicas %d, want 0", sb.Status.Replicas)
	})
	if warm := warmPods(t, ns, "pool"); len(warm) != 0 {
		t.Errorf("%d warm pods created while 4 VMs of a pool of 2 still shut down, want none", len(warm))
	}

	releaseTerminating(t, ns)
	waitPoolReady(t, ns, "pool", 2, waitTimeout)
}

// heldFinalizer holds a deleted pod in place of a VM that takes its grace period to stop
// (kwok deletes a pod at once).
const heldFinalizer = "hyperpool-test/slow-vm-shutdown"

// holdTerminating adds heldFinalizer to p; releaseTerminating (also at the test's end)
// removes it from every pod of ns.
func holdTerminating(t *testing.T, p *corev1.Pod) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"finalizers":[%q]}}`, heldFinalizer)
	if err := k8s.Patch(context.Background(), p, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("holding pod %s: %v", p.Name, err)
	}
	t.Cleanup(func() { releaseTerminating(t, p.Namespace) })
}

func releaseTerminating(t *testing.T, ns string) {
	t.Helper()
	list := &corev1.PodList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Errorf("listing pods: %v", err)
		return
	}
	for i := range list.Items {
		if p := &list.Items[i]; len(p.Finalizers) > 0 {
			err := k8s.Patch(context.Background(), p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
			if client.IgnoreNotFound(err) != nil {
				t.Errorf("releasing pod %s: %v", p.Name, err)
			}
		}
	}
}
