package builders

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

const (
	// DefaultImageBuild is the Windows build of the default image: Server 2022.
	DefaultImageBuild int32 = 20348
	// DefaultImage is the default sandbox container's image, a small Server 2022 one.
	DefaultImage = "mcr.microsoft.com/windows/nanoserver:ltsc2022"
	// DefaultContainerName is the default sandbox container's name.
	DefaultContainerName = "sandbox"
	// DefaultMemoryLimit is the default sandbox container's memory limit: with the Hyper-V
	// VM's overhead, a 1536Mi VM.
	DefaultMemoryLimit = "1Gi"
)

// AgentSandboxWrapper builds an AgentSandbox (a sandbox class).
type AgentSandboxWrapper struct{ agentsv1alpha1.AgentSandbox }

// AgentSandbox returns a class of one small Windows container (DefaultContainerName,
// DefaultImage, a DefaultMemoryLimit memory limit) built for DefaultImageBuild. Replicas
// and every other field are left to the API's defaults.
func AgentSandbox(ns, name string) *AgentSandboxWrapper {
	return &AgentSandboxWrapper{agentsv1alpha1.AgentSandbox{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.AgentSandboxSpec{
			Windows: agentsv1alpha1.WindowsSpec{ImageBuild: DefaultImageBuild},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name:  DefaultContainerName,
				Image: DefaultImage,
				Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(DefaultMemoryLimit)},
				},
			}}}},
		},
	}}
}

// Obj returns a copy of the class built so far.
func (w *AgentSandboxWrapper) Obj() *agentsv1alpha1.AgentSandbox { return w.DeepCopy() }

// Replicas sets spec.replicas, the size of the warm pool.
func (w *AgentSandboxWrapper) Replicas(n int32) *AgentSandboxWrapper {
	w.Spec.Replicas = ptr.To(n)
	return w
}

// ImageBuild sets spec.windows.imageBuild, the Windows build of the class's image.
func (w *AgentSandboxWrapper) ImageBuild(build int32) *AgentSandboxWrapper {
	w.Spec.Windows.ImageBuild = build
	return w
}

// Isolation sets spec.isolation: HyperV or Process.
func (w *AgentSandboxWrapper) Isolation(mode agentsv1alpha1.IsolationMode) *AgentSandboxWrapper {
	w.Spec.Isolation = mode
	return w
}

// RuntimeClass sets spec.runtimeClassName.
func (w *AgentSandboxWrapper) RuntimeClass(name string) *AgentSandboxWrapper {
	w.Spec.RuntimeClassName = ptr.To(name)
	return w
}

// RequireVerifiedRuntime sets spec.placement.requireVerifiedRuntime.
func (w *AgentSandboxWrapper) RequireVerifiedRuntime() *AgentSandboxWrapper {
	w.Spec.Placement.RequireVerifiedRuntime = true
	return w
}

// Egress sets spec.egress: None, Internet or Unrestricted.
func (w *AgentSandboxWrapper) Egress(policy agentsv1alpha1.EgressPolicy) *AgentSandboxWrapper {
	w.Spec.Egress = policy
	return w
}

// Lifetime sets the whole of spec.lifetime.
func (w *AgentSandboxWrapper) Lifetime(l agentsv1alpha1.LifetimeSpec) *AgentSandboxWrapper {
	w.Spec.Lifetime = l
	return w
}

// MaxLifetime sets spec.lifetime.maxLifetime, the class's default and cap for a session's.
func (w *AgentSandboxWrapper) MaxLifetime(d time.Duration) *AgentSandboxWrapper {
	w.Spec.Lifetime.MaxLifetime = Duration(d)
	return w
}

// IdleTimeout sets spec.lifetime.idleTimeout, the class's default and cap for a session's.
func (w *AgentSandboxWrapper) IdleTimeout(d time.Duration) *AgentSandboxWrapper {
	w.Spec.Lifetime.IdleTimeout = Duration(d)
	return w
}

// UpdateStrategy sets spec.updateStrategy.
func (w *AgentSandboxWrapper) UpdateStrategy(s agentsv1alpha1.UpdateStrategy) *AgentSandboxWrapper {
	w.Spec.UpdateStrategy = s
	return w
}

// Replenish sets spec.replenish: refill taken sandboxes once the pool has been quiet for
// quietPeriod, at once below minReady Ready warm ones.
func (w *AgentSandboxWrapper) Replenish(quietPeriod time.Duration, minReady int32) *AgentSandboxWrapper {
	w.Spec.Replenish = agentsv1alpha1.ReplenishSpec{QuietPeriod: Duration(quietPeriod), MinReady: ptr.To(minReady)}
	return w
}

// TemplateLabel adds a label to the pod template.
func (w *AgentSandboxWrapper) TemplateLabel(key, value string) *AgentSandboxWrapper {
	if w.Spec.Template.Labels == nil {
		w.Spec.Template.Labels = map[string]string{}
	}
	w.Spec.Template.Labels[key] = value
	return w
}

// TemplateAnnotation adds an annotation to the pod template (for one, the test bed's
// testbed.PodReadyDelayAnnotation, a simulated VM boot).
func (w *AgentSandboxWrapper) TemplateAnnotation(key, value string) *AgentSandboxWrapper {
	if w.Spec.Template.Annotations == nil {
		w.Spec.Template.Annotations = map[string]string{}
	}
	w.Spec.Template.Annotations[key] = value
	return w
}

// NodeSelector adds a node selector term to the pod template.
func (w *AgentSandboxWrapper) NodeSelector(key, value string) *AgentSandboxWrapper {
	if w.Spec.Template.Spec.NodeSelector == nil {
		w.Spec.Template.Spec.NodeSelector = map[string]string{}
	}
	w.Spec.Template.Spec.NodeSelector[key] = value
	return w
}

// OnNodesOf confines the pods to the nodes labelled and tainted (NoSchedule) key=value, such
// as a test's own (testbed.CreateOwnWindowsNodes).
func (w *AgentSandboxWrapper) OnNodesOf(key, value string) *AgentSandboxWrapper {
	return w.NodeSelector(key, value).Toleration(corev1.Toleration{Key: key, Operator: corev1.TolerationOpEqual,
		Value: value, Effect: corev1.TaintEffectNoSchedule})
}

// Toleration adds a toleration to the pod template.
func (w *AgentSandboxWrapper) Toleration(t corev1.Toleration) *AgentSandboxWrapper {
	w.Spec.Template.Spec.Tolerations = append(w.Spec.Template.Spec.Tolerations, t)
	return w
}

// Container replaces the template's containers with c.
func (w *AgentSandboxWrapper) Container(c corev1.Container) *AgentSandboxWrapper {
	w.Spec.Template.Spec.Containers = []corev1.Container{c}
	return w
}

// MemoryLimit sets the memory limit of the template's first container.
func (w *AgentSandboxWrapper) MemoryLimit(q string) *AgentSandboxWrapper {
	c := &w.Spec.Template.Spec.Containers[0]
	if c.Resources.Limits == nil {
		c.Resources.Limits = corev1.ResourceList{}
	}
	c.Resources.Limits[corev1.ResourceMemory] = resource.MustParse(q)
	return w
}

// NoMemoryLimit removes the template's first container's resources, leaving the VM's size
// to hcsshim's defaults.
func (w *AgentSandboxWrapper) NoMemoryLimit() *AgentSandboxWrapper {
	w.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
	return w
}

// PodSpec lets a test change the template's pod spec in ways no setter covers.
func (w *AgentSandboxWrapper) PodSpec(change func(*corev1.PodSpec)) *AgentSandboxWrapper {
	change(&w.Spec.Template.Spec)
	return w
}

// Autoscaling sets spec.autoscaling: the pool sized by demand between min and max.
func (w *AgentSandboxWrapper) Autoscaling(minReplicas, maxReplicas int32, scaleDownDelay time.Duration) *AgentSandboxWrapper {
	w.Spec.Autoscaling = &agentsv1alpha1.AutoscalingSpec{MinReplicas: ptr.To(minReplicas), MaxReplicas: maxReplicas,
		ScaleDownDelay: Duration(scaleDownDelay)}
	return w
}

// AutoscalingSchedule adds a window to spec.autoscaling (set Autoscaling first).
func (w *AgentSandboxWrapper) AutoscalingSchedule(s agentsv1alpha1.AutoscalingSchedule) *AgentSandboxWrapper {
	w.Spec.Autoscaling.Schedules = append(w.Spec.Autoscaling.Schedules, s)
	return w
}

// StartTimeout sets spec.lifetime.startTimeout: how long the class's sessions may wait.
func (w *AgentSandboxWrapper) StartTimeout(d time.Duration) *AgentSandboxWrapper {
	w.Spec.Lifetime.StartTimeout = Duration(d)
	return w
}

// Duration returns d as an API duration.
func Duration(d time.Duration) *agentsv1alpha1.Duration {
	return &agentsv1alpha1.Duration{Duration: d}
}
