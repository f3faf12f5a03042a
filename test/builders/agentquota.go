package builders

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// AgentQuotaWrapper builds an AgentQuota.
type AgentQuotaWrapper struct{ agentsv1alpha1.AgentQuota }

// AgentQuota returns a quota with no limit set: every one of spec.hard is unlimited until a
// setter gives it one.
func AgentQuota(ns, name string) *AgentQuotaWrapper {
	return &AgentQuotaWrapper{agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}
}

// Obj returns a copy of the quota built so far.
func (w *AgentQuotaWrapper) Obj() *agentsv1alpha1.AgentQuota { return w.DeepCopy() }

// Hard sets the whole of spec.hard.
func (w *AgentQuotaWrapper) Hard(h agentsv1alpha1.QuotaLimits) *AgentQuotaWrapper {
	w.Spec.Hard = h
	return w
}

// Sessions sets spec.hard.sessions, how many sessions may hold a sandbox at once.
func (w *AgentQuotaWrapper) Sessions(n int32) *AgentQuotaWrapper {
	w.Spec.Hard.Sessions = ptr.To(n)
	return w
}

// WarmSandboxes sets spec.hard.warmSandboxes, how many warm pods the namespace's pools may
// keep together.
func (w *AgentQuotaWrapper) WarmSandboxes(n int32) *AgentQuotaWrapper {
	w.Spec.Hard.WarmSandboxes = ptr.To(n)
	return w
}

// Memory sets spec.hard.memory, the VM memory of every live sandbox together (e.g. "8Gi").
func (w *AgentQuotaWrapper) Memory(q string) *AgentQuotaWrapper {
	w.Spec.Hard.Memory = ptr.To(resource.MustParse(q))
	return w
}

// CPU sets spec.hard.cpu, the vCPUs of every live sandbox together (e.g. "8").
func (w *AgentQuotaWrapper) CPU(q string) *AgentQuotaWrapper {
	w.Spec.Hard.CPU = ptr.To(resource.MustParse(q))
	return w
}

// MaxQueued sets spec.maxQueued, how many sessions may wait for a slot.
func (w *AgentQuotaWrapper) MaxQueued(n int32) *AgentQuotaWrapper {
	w.Spec.MaxQueued = ptr.To(n)
	return w
}
