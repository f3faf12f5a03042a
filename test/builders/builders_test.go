package builders

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

func TestAgentSandboxDefaults(t *testing.T) {
	sb := AgentSandbox("ns", "pool").Obj()
	if sb.Namespace != "ns" || sb.Name != "pool" || sb.Spec.Replicas != nil || sb.Spec.Windows.ImageBuild != 20348 {
		t.Errorf("metadata %s/%s, replicas %v, build %d; want ns/pool, unset, 20348", sb.Namespace, sb.Name, sb.Spec.Replicas, sb.Spec.Windows.ImageBuild)
	}
	cs := sb.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "sandbox" || cs[0].Image != "mcr.microsoft.com/windows/nanoserver:ltsc2022" ||
		cs[0].Resources.Limits.Memory().String() != "1Gi" {
		t.Errorf("containers = %+v; want one nanoserver container with a 1Gi memory limit", cs)
	}
	if sb = AgentSandbox("ns", "pool").NoMemoryLimit().Obj(); sb.Spec.Template.Spec.Containers[0].Resources.Limits != nil {
		t.Errorf("NoMemoryLimit left %v", sb.Spec.Template.Spec.Containers[0].Resources.Limits)
	}
}

func TestObjReturnsACopy(t *testing.T) {
	w := AgentSandbox("ns", "pool").Replicas(1)
	first := w.Obj()
	w.Replicas(2).TemplateLabel("a", "b")
	if *first.Spec.Replicas != 1 || first.Spec.Template.Labels != nil {
		t.Errorf("a later setter changed an object built before it: %+v", first.Spec)
	}
	if got := w.Obj(); *got.Spec.Replicas != 2 || got.Spec.Template.Labels["a"] != "b" {
		t.Errorf("setters lost: %+v", got.Spec)
	}
}

func TestAgentSessionAndQuota(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 250_000_500, time.UTC)
	s := AgentSession("ns", "s1", "pool").MaxLifetime(time.Minute).Phase(agentsv1alpha1.SessionReady).BoundTo("pool-abcde", at).QuotaReserved().Obj()
	if s.Spec.SandboxName != "pool" || s.Spec.MaxLifetime.Duration != time.Minute || s.Status.PodName != "pool-abcde" ||
		!s.Status.PreciseBoundTime.Time.Equal(at.Truncate(time.Microsecond)) || !s.Status.BoundTime.Time.Equal(at.Truncate(time.Second)) ||
		len(s.Status.Conditions) != 1 || s.Status.Conditions[0].Type != agentsv1alpha1.QuotaReserved {
		t.Errorf("session = %+v", s)
	}
	q := AgentQuota("ns", "quota").Sessions(3).Memory("8Gi").MaxQueued(2).Obj()
	if ptr.Deref(q.Spec.Hard.Sessions, -1) != 3 || q.Spec.Hard.Memory.String() != "8Gi" || ptr.Deref(q.Spec.MaxQueued, -1) != 2 ||
		q.Spec.Hard.CPU != nil || q.Spec.Hard.WarmSandboxes != nil {
		t.Errorf("quota = %+v", q.Spec)
	}
}

func TestPodOwnedBy(t *testing.T) {
	s := AgentSession("ns", "s1", "pool").UID("uid-s1").Obj()
	p := Pod("ns", "p").Label(agentsv1alpha1.SessionLabel, "s1").OwnedBy(s).Ready().Node("win-0").Obj()
	owner := p.OwnerReferences[0]
	if owner.APIVersion != agentsv1alpha1.GroupVersion.String() || owner.Kind != "AgentSession" || owner.UID != "uid-s1" || !ptr.Deref(owner.Controller, false) {
		t.Errorf("owner = %+v; want the session as controller", owner)
	}
	if len(p.Status.Conditions) != 1 || p.Status.Conditions[0].Type != corev1.PodReady || p.Spec.NodeName != "win-0" {
		t.Errorf("pod = %+v", p)
	}
}
