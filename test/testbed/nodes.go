//go:build !windows

package testbed

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"maps"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
)

// Labels, annotation and taint of the simulated nodes.
const (
	// KwokNodeLabel selects the nodes kwok manages (--manage-nodes-with-label-selector).
	KwokNodeLabel = "type"
	// KwokNodeLabelValue is KwokNodeLabel's value.
	KwokNodeLabelValue = "kwok"
	// WindowsBuildLabel is the well-known label with a node's Windows build; node selectors
	// (of pods or RuntimeClasses) match it to the build their container images need.
	WindowsBuildLabel = "node.kubernetes.io/windows-build"
	// KwokNodeAnnotation marks a node as fake, as in kwok's examples.
	KwokNodeAnnotation = "kwok.x-k8s.io/node"
	// WindowsTaintKey and WindowsTaintValue form the usual taint of Windows nodes
	// (os=windows:NoSchedule), which keeps Linux pods off them.
	WindowsTaintKey   = "os"
	WindowsTaintValue = "windows"
)

// nodeReadyTimeout bounds the wait for new nodes to become Ready and schedulable.
const nodeReadyTimeout = 30 * time.Second

// maxNodes is how many distinct pod CIDRs (10.244.0.0/24 to 10.255.255.0/24) one Env hands out.
const maxNodes = 12 * 256

// NodeOption changes a node before CreateWindowsNodes creates it.
type NodeOption func(*corev1.Node)

// WithLabels adds labels to (or overrides labels of) the nodes.
func WithLabels(labels map[string]string) NodeOption {
	return func(n *corev1.Node) { maps.Copy(n.Labels, labels) }
}

// WithResources sets both capacity and allocatable of the given resources, e.g.
// corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")}; others keep the defaults.
func WithResources(resources corev1.ResourceList) NodeOption {
	return func(n *corev1.Node) {
		for name, quantity := range resources {
			n.Status.Capacity[name] = quantity
			n.Status.Allocatable[name] = quantity
		}
	}
}

// WithTaints replaces the nodes' taints (by default only os=windows:NoSchedule).
func WithTaints(taints ...corev1.Taint) NodeOption {
	return func(n *corev1.Node) { n.Spec.Taints = taints }
}

// WindowsTaint is the taint every simulated Windows node carries by default.
func WindowsTaint() corev1.Taint {
	return corev1.Taint{Key: WindowsTaintKey, Value: WindowsTaintValue, Effect: corev1.TaintEffectNoSchedule}
}

// WindowsToleration tolerates WindowsTaint; pods meant for the simulated nodes need it.
func WindowsToleration() corev1.Toleration {
	return corev1.Toleration{Key: WindowsTaintKey, Operator: corev1.TolerationOpEqual,
		Value: WindowsTaintValue, Effect: corev1.TaintEffectNoSchedule}
}

// CreateWindowsNodes creates count simulated Windows nodes named namePrefix-0 ...
// namePrefix-<count-1>, on the given Windows build (e.g. "10.0.20348"), and waits until
// kwok reports each Ready and the node lifecycle controller has lifted its not-ready taint,
// so pods can be scheduled at once. Nodes are cluster-scoped: callers pick prefixes that
// do not collide and delete the nodes if other tests must not see them.
func (e *Env) CreateWindowsNodes(ctx context.Context, namePrefix string, count int, build string, opts ...NodeOption) ([]corev1.Node, error) {
	kubeletVersion, err := e.kubeletVersion()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, count)
	for i := range count {
		index := e.nodeIndex.Add(1) - 1
		if index >= maxNodes {
			return nil, fmt.Errorf("test bed ran out of pod CIDRs after %d nodes", maxNodes)
		}
		node := windowsNode(fmt.Sprintf("%s-%d", namePrefix, i), build, kubeletVersion, index)
		e.setExecEndpoint(node)
		for _, opt := range opts {
			opt(node)
		}
		if err := e.Client.Create(ctx, node); err != nil {
			return nil, fmt.Errorf("create node %s: %w", node.Name, err)
		}
		names = append(names, node.Name)
	}
	return e.waitForSchedulableNodes(ctx, names)
}

// windowsNode builds a node as a Windows kubelet would register it. index makes its pod
// CIDR and address unique: kwok allocates pod IPs from the node's pod CIDR, and without one
// it was seen writing two pod IPs at once, which the API server rejects.
func windowsNode(name, build, kubeletVersion string, index int64) *corev1.Node {
	podCIDR := fmt.Sprintf("10.%d.%d.0/24", 244+index/256, index%256)
	defaults := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				KwokNodeLabel:          KwokNodeLabelValue,
				corev1.LabelOSStable:   "windows",
				corev1.LabelArchStable: "amd64",
				corev1.LabelHostname:   name,
				WindowsBuildLabel:      build,
			},
			Annotations: map[string]string{KwokNodeAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{
			PodCIDR:  podCIDR,
			PodCIDRs: []string{podCIDR},
			Taints:   []corev1.Taint{WindowsTaint()},
		},
		Status: corev1.NodeStatus{
			Capacity:    defaults.DeepCopy(),
			Allocatable: defaults.DeepCopy(),
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.240.%d.%d", index/250, 1+index%250)},
				{Type: corev1.NodeHostName, Address: name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				OperatingSystem: "windows",
				Architecture:    "amd64",
				KernelVersion:   build,
				OSImage:         windowsOSImage(build),
				KubeletVersion:  kubeletVersion,
			},
		},
	}
}

// windowsOSImage names the Windows Server release of a build, as a node reports it.
func windowsOSImage(build string) string {
	switch build {
	case "10.0.17763":
		return "Windows Server 2019 Datacenter"
	case "10.0.20348":
		return "Windows Server 2022 Datacenter"
	case "10.0.26100":
		return "Windows Server 2025 Datacenter"
	default:
		return "Windows Server Datacenter"
	}
}

// kubeletVersion is the version a kubelet of the API server's release reports. Binaries
// built with plain `go build` (as hack/tools.sh builds them) call themselves
// v0.0.0-master; then the version of the k8s.io/kubernetes module recorded in the
// kube-apiserver binary is used.
func (e *Env) kubeletVersion() (string, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
	if err != nil {
		return "", fmt.Errorf("create discovery client: %w", err)
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return "", fmt.Errorf("get API server version: %w", err)
	}
	if !strings.HasPrefix(info.GitVersion, "v0.0.0") {
		return info.GitVersion, nil
	}
	if build, err := buildinfo.ReadFile(e.BinaryPath("kube-apiserver")); err == nil {
		for _, mod := range append([]*debug.Module{&build.Main}, build.Deps...) {
			if mod.Path == "k8s.io/kubernetes" && strings.HasPrefix(mod.Version, "v1.") {
				return mod.Version, nil
			}
		}
	}
	return info.GitVersion, nil
}

// waitForSchedulableNodes waits until every named node is Ready and free of the not-ready
// taint, and returns them. kwok and the node lifecycle controller take longer for more
// nodes (about 5 a second on 2 cores), so the wait grows with their number.
func (e *Env) waitForSchedulableNodes(ctx context.Context, names []string) ([]corev1.Node, error) {
	nodes := make([]corev1.Node, len(names))
	pending := ""
	timeout := nodeReadyTimeout + time.Duration(len(names))*200*time.Millisecond
	// Each check lists every node: check a thousand nodes once a second, not 20 times.
	interval := max(pollInterval, time.Duration(len(names))*time.Millisecond)
	err := e.pollEvery(ctx, interval, timeout, func(ctx context.Context) (bool, error) {
		list := &corev1.NodeList{}
		if err := e.Client.List(ctx, list); err != nil {
			return false, err
		}
		byName := make(map[string]*corev1.Node, len(list.Items))
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
		for i, name := range names {
			n, ok := byName[name]
			if !ok || !nodeSchedulable(n) {
				pending = name
				return false, nil
			}
			nodes[i] = *n
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for node %s to become Ready (is kwok managing it? see %s): %w",
			pending, e.logPath("kwok"), err)
	}
	return nodes, nil
}

// nodeSchedulable reports whether a node is Ready and not tainted as not ready.
func nodeSchedulable(node *corev1.Node) bool {
	for _, taint := range node.Spec.Taints {
		if taint.Key == corev1.TaintNodeNotReady || taint.Key == corev1.TaintNodeUnreachable {
			return false
		}
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// OwnNodesKey labels and taints (NoSchedule) the nodes CreateOwnWindowsNodes makes, with the
// test's namespace as value: only pods that select and tolerate it run there, and the
// test's pods run nowhere else (builders' OnNodesOf).
const OwnNodesKey = "hyperpool.test/own-nodes"

// CreateOwnWindowsNodes creates count Windows nodes of build for one test alone, labelled and
// tainted OwnNodesKey=ns, and deletes them when the test ends: a test that writes to its
// nodes (labels, a node agent's annotations) or counts what runs there shares them with no
// other test.
func (e *Env) CreateOwnWindowsNodes(t testing.TB, ns string, count int, build string) []corev1.Node {
	t.Helper()
	own := corev1.Taint{Key: OwnNodesKey, Value: ns, Effect: corev1.TaintEffectNoSchedule}
	nodes, err := e.CreateWindowsNodes(context.Background(), "own-"+ns, count, build,
		WithLabels(map[string]string{OwnNodesKey: ns}), WithTaints(WindowsTaint(), own))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := range nodes {
			_ = e.Client.Delete(context.Background(), &nodes[i])
		}
	})
	return nodes
}

// CreateRuntimeClass creates a RuntimeClass of the handler for one test, deleted when the
// test ends.
func (e *Env) CreateRuntimeClass(t testing.TB, name, handler string) {
	t.Helper()
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler}
	if err := e.Client.Create(context.Background(), rc); err != nil {
		t.Fatalf("creating RuntimeClass %s: %v", name, err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), rc) })
}
