package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
	"github.com/hyperpool/hyperpool/internal/uvm"
	"github.com/hyperpool/hyperpool/internal/windows"
)

const (
	osLabel = "kubernetes.io/os"
	// containerUser is the unprivileged account of Windows base images; sandboxes run as it
	// unless the template names another user.
	containerUser = "ContainerUser"
)

// windowsToleration tolerates the taint platform teams usually put on Windows nodes so Linux pods stay
// off them; sandbox pods tolerate it.
var windowsToleration = corev1.Toleration{Key: "os", Operator: corev1.TolerationOpEqual, Value: "windows", Effect: corev1.TaintEffectNoSchedule}

// blocker is a reason a class's pods cannot be created now, as a condition reason and a
// message that names the values and the fix.
type blocker struct {
	Reason  string
	Message string
}

// podRecipe is everything needed to build a class's pods, resolved once per reconcile.
type podRecipe struct {
	sandbox      *agentsv1alpha1.AgentSandbox
	templateHash string
	runtimeClass string
	hostBuilds   []string // node.kubernetes.io/windows-build values the pods may run on
	// verifiedHandler, when set, is the runtime handler whose node agent label a node must
	// carry (spec.placement.requireVerifiedRuntime).
	verifiedHandler string
}

// podFactory resolves what a class's pods need from the cluster (the RuntimeClass, the
// Windows builds of the nodes) and builds them.
type podFactory struct {
	reader client.Reader
	config Config
	builds *nodeBuilds // shared by the controllers' factories
}

// recipe checks the class's prerequisites and returns a recipe, or a blocker saying why no
// pod of the class can run now.
func (f *podFactory) recipe(ctx context.Context, sb *agentsv1alpha1.AgentSandbox) (*podRecipe, *blocker, error) {
	rc, runtimeClass, err := f.runtimeClassFor(ctx, sb)
	if err != nil {
		return nil, nil, err
	}
	return f.recipeWith(ctx, sb, rc, runtimeClass)
}

// recipeWith is recipe for a class whose RuntimeClass runtimeClassFor already resolved: rc
// by name, runtimeClass the object (nil when it does not exist).
func (f *podFactory) recipeWith(ctx context.Context, sb *agentsv1alpha1.AgentSandbox, rc string, runtimeClass *nodev1.RuntimeClass) (*podRecipe, *blocker, error) {
	if runtimeClass == nil {
		return nil, &blocker{Reason: agentsv1alpha1.ReasonRuntimeClassNotFound, Message: fmt.Sprintf(
			"RuntimeClass %q does not exist: create it (handler runhcs-wcow-hypervisor for HyperV, runhcs-wcow-process for Process), or set spec.runtimeClassName to an existing one", rc)}, nil
	}
	if blk := isolationMismatch(sb, runtimeClass); blk != nil {
		return nil, blk, nil
	}

	nodeBuilds, err := f.windowsNodeBuilds(ctx)
	if err != nil {
		return nil, nil, err
	}
	image := uint16(sb.Spec.Windows.ImageBuild)
	var runnable []string
	for _, b := range windows.CompatibleHostBuilds(isolationOf(sb), image, nodeBuilds) {
		runnable = append(runnable, windows.FormatBuildLabel(b))
	}
	if !slices.ContainsFunc(nodeBuilds, func(b uint16) bool { return windows.CanRun(isolationOf(sb), image, b) }) {
		return nil, &blocker{Reason: agentsv1alpha1.ReasonNoCompatibleNodes, Message: noCompatibleNodesMessage(sb, nodeBuilds)}, nil
	}
	recipe := &podRecipe{sandbox: sb, templateHash: templateHash(sb), runtimeClass: rc, hostBuilds: runnable}
	if sb.Spec.Placement.RequireVerifiedRuntime && isolationOf(sb) == agentsv1alpha1.IsolationHyperV {
		recipe.verifiedHandler = runtimeClass.Handler
	}
	return recipe, nil, nil
}

// isolationMismatch ties the RuntimeClass to spec.isolation. A Hyper-V handler under a
// Process class would run a VM that the quota counts as zero; a process handler under a
// HyperV class would run the sandbox on the host kernel, without the VM it promises. The
// runhcs handlers say which they are in their names (runhcs-wcow-hypervisor[-<build>],
// runhcs-wcow-process).
func isolationMismatch(sb *agentsv1alpha1.AgentSandbox, rc *nodev1.RuntimeClass) *blocker {
	hyperV := strings.Contains(rc.Handler, "hypervisor")
	switch isolation := isolationOf(sb); {
	case isolation == agentsv1alpha1.IsolationHyperV && !hyperV:
		return &blocker{Reason: agentsv1alpha1.ReasonRuntimeClassMismatch, Message: fmt.Sprintf(
			"spec.isolation is HyperV but RuntimeClass %q has handler %q, which is not a Hyper-V handler: the sandbox would run without its VM; name a RuntimeClass whose handler is runhcs-wcow-hypervisor (or runhcs-wcow-hypervisor-<build>)", rc.Name, rc.Handler)}
	case isolation == agentsv1alpha1.IsolationProcess && hyperV:
		return &blocker{Reason: agentsv1alpha1.ReasonRuntimeClassMismatch, Message: fmt.Sprintf(
			"spec.isolation is Process but RuntimeClass %q has handler %q, which starts a Hyper-V VM that the quota would not count; set spec.isolation: HyperV, or name a RuntimeClass with handler runhcs-wcow-process", rc.Name, rc.Handler)}
	}
	return nil
}

func noCompatibleNodesMessage(sb *agentsv1alpha1.AgentSandbox, nodeBuilds []uint16) string {
	have := "none"
	if len(nodeBuilds) > 0 {
		var s []string
		for _, b := range nodeBuilds {
			s = append(s, fmt.Sprint(b))
		}
		have = strings.Join(s, ", ")
	}
	fix := "add Windows nodes of build %d or newer, or rebuild the image for a build the nodes have"
	if isolationOf(sb) == agentsv1alpha1.IsolationProcess {
		fix = "add Windows nodes of build %d, use isolation HyperV, or rebuild the image for a build the nodes have"
	}
	return fmt.Sprintf("no Windows node can run image build %d with %s isolation; the Windows nodes have builds: %s; "+fix,
		sb.Spec.Windows.ImageBuild, isolationOf(sb), have, sb.Spec.Windows.ImageBuild)
}

func (f *podFactory) runtimeClassName(sb *agentsv1alpha1.AgentSandbox) string {
	if sb.Spec.RuntimeClassName != nil && *sb.Spec.RuntimeClassName != "" {
		return *sb.Spec.RuntimeClassName
	}
	if isolationOf(sb) == agentsv1alpha1.IsolationProcess {
		return f.config.ProcessRuntimeClass
	}
	return f.config.HyperVRuntimeClass
}

// windowsNodeBuilds returns the distinct builds of the cluster's Windows nodes.
func (f *podFactory) windowsNodeBuilds(ctx context.Context) ([]uint16, error) {
	return f.builds.get(ctx, f.reader)
}

// nodeBuilds remembers the distinct builds of the cluster's Windows nodes, from their
// node.kubernetes.io/windows-build labels. Every recipe needs them, and listing every node
// for each cold start grows with the cluster (docs/performance.md has the profile). The
// node watches call changed on every event that can alter the answer (a node
// added or deleted, its OS or build label changed), before they wake anything; the next
// lookup lists the nodes again.
type nodeBuilds struct {
	generation atomic.Uint64 // bumped by changed

	mu       sync.Mutex
	builds   []uint16
	listedAt uint64 // the generation builds were listed at
	listed   bool
}

// changed marks the remembered builds stale.
func (n *nodeBuilds) changed() { n.generation.Add(1) }

func (n *nodeBuilds) get(ctx context.Context, reader client.Reader) ([]uint16, error) {
	gen := n.generation.Load() // before the list: a change during it makes the result stale
	n.mu.Lock()
	if n.listed && n.listedAt == gen {
		defer n.mu.Unlock()
		return n.builds, nil
	}
	n.mu.Unlock()

	nodes := &metav1.PartialObjectMetadataList{} // nodes are cached as metadata only
	nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := reader.List(ctx, nodes, client.MatchingLabels{osLabel: "windows"}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Windows nodes: %w", err)
	}
	var builds []uint16
	for i := range nodes.Items {
		b, err := windows.ParseBuildLabel(nodes.Items[i].Labels[windows.BuildLabel])
		if err == nil && !slices.Contains(builds, b) {
			builds = append(builds, b)
		}
	}
	slices.Sort(builds)

	n.mu.Lock()
	defer n.mu.Unlock()
	n.builds, n.listedAt, n.listed = builds, gen, true
	return builds, nil
}

func isolationOf(sb *agentsv1alpha1.AgentSandbox) agentsv1alpha1.IsolationMode {
	if sb.Spec.Isolation == "" {
		return agentsv1alpha1.IsolationHyperV
	}
	return sb.Spec.Isolation
}

// templateHash hashes the parts of a class that shape its pods, so warm pods of an older
// template can be told apart. Pool size, lifetimes and egress are not part of it: changing
// them replaces no pod. Placement is, but only when set, so that classes stored before it
// existed keep their hash (and their warm pods) across a manager upgrade.
func templateHash(sb *agentsv1alpha1.AgentSandbox) string {
	var placement *agentsv1alpha1.PlacementSpec
	if sb.Spec.Placement != (agentsv1alpha1.PlacementSpec{}) {
		placement = &sb.Spec.Placement
	}
	shape := struct {
		Template         corev1.PodTemplateSpec
		Isolation        agentsv1alpha1.IsolationMode
		RuntimeClassName *string
		Windows          agentsv1alpha1.WindowsSpec
		VM               *agentsv1alpha1.VMSpec
		Placement        *agentsv1alpha1.PlacementSpec `json:",omitempty"`
	}{sb.Spec.Template, isolationOf(sb), sb.Spec.RuntimeClassName, sb.Spec.Windows, sb.Spec.VM, placement}
	data, _ := json.Marshal(shape) // plain structs: cannot fail
	h := fnv.New32a()
	_, _ = h.Write(data)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// build returns a new pod of the class: the template plus what every sandbox needs.
func (r *podRecipe) build() *corev1.Pod {
	sb := r.sandbox
	tmpl := sb.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: sb.Name + "-",
			Namespace:    sb.Namespace,
			Labels:       tmpl.Labels,
			Annotations:  tmpl.Annotations,
		},
		Spec: tmpl.Spec,
	}
	// The agents.hyperpool.io/ keys are the manager's bookkeeping; the CRD refuses them in a
	// template, and a class stored before that rule must not forge them either (a template
	// label agents.hyperpool.io/session made a pool count its own warm pods as bound).
	pod.Labels = withoutReservedKeys(pod.Labels)
	pod.Annotations = withoutReservedKeys(pod.Annotations)
	pod.Labels[agentsv1alpha1.ClassLabel] = sb.Name
	pod.Labels[agentsv1alpha1.TemplateHashLabel] = r.templateHash
	for k, v := range uvm.Annotations(isolationOf(sb), sb.Spec.VM, pod.Spec.Containers) {
		pod.Annotations[k] = v
	}
	// What the quota and the pool charge for this pod's VM, recorded now: the sizing keys
	// above are the shim's input, which a tenant could strip once the VM runs.
	pod.Annotations[uvm.FootprintAnnotation] = uvm.FormatFootprint(classFootprint(sb))
	pod.Spec.RuntimeClassName = ptr.To(r.runtimeClass)
	// The grace the class gives its pods, capped for a class stored before the CRD capped
	// it: the manager's own deletes use it, and holdGracePeriods holds others' to it.
	pod.Spec.TerminationGracePeriodSeconds = ptr.To(sb.Spec.EffectiveTerminationGracePeriodSeconds())
	placeOnWindows(&pod.Spec, r.hostBuilds, r.verifiedHandler)
	applySafeDefaults(&pod.Spec)
	pod.Annotations[specDigestAnnotation] = specDigest(&pod.Spec) // the bind's tamper check
	return pod
}

// withoutReservedKeys returns a copy of m without agents.hyperpool.io/ keys (never nil).
func withoutReservedKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+2)
	for k, v := range m {
		if !strings.HasPrefix(k, agentsv1alpha1.GroupVersion.Group+"/") {
			out[k] = v
		}
	}
	return out
}

// placeOnWindows confines the pod to Windows nodes whose build can run the image and, when
// verifiedHandler is set, whose node agent verified that runtime handler.
func placeOnWindows(spec *corev1.PodSpec, hostBuilds []string, verifiedHandler string) {
	if spec.NodeSelector == nil {
		spec.NodeSelector = map[string]string{}
	}
	spec.NodeSelector[osLabel] = "windows"
	if !slices.ContainsFunc(spec.Tolerations, toleratesWindowsTaint) {
		spec.Tolerations = append(spec.Tolerations, windowsToleration)
	}

	reqs := []corev1.NodeSelectorRequirement{{Key: windows.BuildLabel, Operator: corev1.NodeSelectorOpIn, Values: hostBuilds}}
	if verifiedHandler != "" {
		reqs = append(reqs, corev1.NodeSelectorRequirement{Key: runtimereport.LabelKey(verifiedHandler),
			Operator: corev1.NodeSelectorOpIn, Values: []string{runtimereport.LabelValue}})
	}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	terms := &na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(*terms) == 0 {
		*terms = []corev1.NodeSelectorTerm{{}}
	}
	// Terms are ORed: the requirements must hold in each of them.
	for i := range *terms {
		(*terms)[i].MatchExpressions = append((*terms)[i].MatchExpressions, reqs...)
	}
}

func toleratesWindowsTaint(t corev1.Toleration) bool {
	keyMatches := t.Key == windowsToleration.Key || (t.Key == "" && t.Operator == corev1.TolerationOpExists)
	valueMatches := t.Operator == corev1.TolerationOpExists || t.Value == windowsToleration.Value
	effectMatches := t.Effect == "" || t.Effect == windowsToleration.Effect
	return keyMatches && valueMatches && effectMatches
}

// applySafeDefaults gives the pod no API credentials and no host access, and runs it as the
// unprivileged ContainerUser unless the template names a user. Admission (CEL on the CRD)
// already refuses host access and credentials; this holds even for objects stored before a
// rule existed.
func applySafeDefaults(spec *corev1.PodSpec) {
	// Credentials come with the session, never in a warm pod.
	spec.AutomountServiceAccountToken = ptr.To(false)
	if spec.EnableServiceLinks == nil {
		spec.EnableServiceLinks = ptr.To(false)
	}
	spec.HostNetwork = false
	spec.HostPID = false
	spec.HostIPC = false

	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	if spec.SecurityContext.WindowsOptions == nil {
		spec.SecurityContext.WindowsOptions = &corev1.WindowsSecurityContextOptions{}
	}
	podWin := spec.SecurityContext.WindowsOptions
	podWin.HostProcess = nil
	// The pod-level user always: a container that names none runs as it, whatever the
	// others name.
	if podWin.RunAsUserName == nil {
		podWin.RunAsUserName = ptr.To(containerUser)
	}

	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			sc := list[i].SecurityContext
			if sc == nil {
				continue
			}
			sc.Privileged = nil
			// Not false either: the API server refuses allowPrivilegeEscalation on a
			// Windows pod (spec.os.name windows) whatever its value, so setting it made
			// every pod of a template with a securityContext fail to create.
			sc.AllowPrivilegeEscalation = nil
			if sc.WindowsOptions != nil {
				sc.WindowsOptions.HostProcess = nil
			}
		}
	}
}

// classFootprint is the VM size of one pod of the class.
func classFootprint(sb *agentsv1alpha1.AgentSandbox) agentsv1alpha1.Footprint {
	return uvm.FootprintOf(isolationOf(sb), sb.Spec.VM, sb.Spec.Template.Spec.Containers)
}

// nodeGone reports whether a pod's node no longer exists (false for an unscheduled pod).
// Nodes are cached as metadata only.
func nodeGone(ctx context.Context, reader client.Reader, nodeName string) (bool, error) {
	if nodeName == "" {
		return false, nil
	}
	node := &metav1.PartialObjectMetadata{}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	err := reader.Get(ctx, types.NamespacedName{Name: nodeName}, node)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, err
}
