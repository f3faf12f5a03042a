package nodeagent

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hyperpool/hyperpool/internal/uvm"
)

// fakeHost is a node with utility VMs; TerminateUtilityVM removes one.
type fakeHost struct {
	vms           []UtilityVM
	listErr       error
	terminateErr  error
	terminated    []string
	scratch       *uint64 // non-nil: implements the node-wide scratch total
	scratchErr    error
	listCallCount int
	onList        func(calls int)
}

func (h *fakeHost) ListUtilityVMs(context.Context) ([]UtilityVM, error) {
	h.listCallCount++
	if h.onList != nil {
		h.onList(h.listCallCount)
	}
	if h.listErr != nil {
		return nil, h.listErr
	}
	return slices.Clone(h.vms), nil
}

func (h *fakeHost) TerminateUtilityVM(_ context.Context, id string) error {
	if h.terminateErr != nil {
		return h.terminateErr
	}
	h.terminated = append(h.terminated, id)
	h.vms = slices.DeleteFunc(h.vms, func(vm UtilityVM) bool { return vm.ID == id })
	return nil
}

// scratchHost adds the node-wide scratch measurement to fakeHost.
type scratchHost struct{ *fakeHost }

func (h scratchHost) ScratchDiskBytes(context.Context) (uint64, error) {
	return *h.scratch, h.scratchErr
}

type fakeResolver struct {
	sandboxes map[string]PodRef
	err       error
}

func (r *fakeResolver) ResolveSandboxes(context.Context) (map[string]PodRef, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.sandboxes, nil
}

type fakePods struct {
	uids []types.UID
	meta map[types.UID]PodMeta // the pods' metadata, when a test needs more than the UID
	err  error
}

func (p *fakePods) ListPods(context.Context) (map[types.UID]PodMeta, error) {
	if p.err != nil {
		return nil, p.err
	}
	m := map[types.UID]PodMeta{}
	for _, u := range p.uids {
		m[u] = p.meta[u]
	}
	return m, nil
}

type event struct{ Type, Reason, Action, Note string }

// fakeNode is a Node: annotation and patches are the summary annotation's, sizes the
// uvm.SizesAnnotation's, others (and otherPatches) any other annotation's, taints its
// taints, labels its labels.
type fakeNode struct {
	annotation   string
	patches      []string
	sizes        string
	sizePatches  []string
	others       map[string]string
	otherPatches []string
	labels       map[string]string
	labelWrites  int
	taints       []corev1.Taint
	taintWrites  int
	events       []event
	getErr       error
	patchErr     error
}

func (n *fakeNode) Annotation(_ context.Context, key string) (string, error) {
	switch key {
	case uvm.SizesAnnotation:
		return n.sizes, n.getErr
	case SummaryAnnotation:
		return n.annotation, n.getErr
	}
	return n.others[key], n.getErr
}

func (n *fakeNode) SetAnnotation(_ context.Context, key, v string) error {
	if n.patchErr != nil {
		return n.patchErr
	}
	switch key {
	case uvm.SizesAnnotation:
		n.sizes = v
		n.sizePatches = append(n.sizePatches, v)
		return nil
	case SummaryAnnotation:
	default:
		if n.others == nil {
			n.others = map[string]string{}
		}
		n.others[key] = v
		n.otherPatches = append(n.otherPatches, key+"="+v)
		return nil
	}
	n.annotation = v
	n.patches = append(n.patches, v)
	return nil
}

func (n *fakeNode) Labels(context.Context) (map[string]string, error) {
	return maps.Clone(n.labels), n.getErr
}

// SetLabels applies the agent's own merge patch (labelChanges) to labels.
func (n *fakeNode) SetLabels(_ context.Context, prefix string, want map[string]string) (bool, error) {
	if n.patchErr != nil {
		return false, n.patchErr
	}
	changes := labelChanges(n.labels, prefix, want)
	if len(changes) == 0 {
		return false, nil
	}
	if n.labels == nil {
		n.labels = map[string]string{}
	}
	for k, v := range changes {
		if v == nil {
			delete(n.labels, k)
		} else {
			n.labels[k] = v.(string)
		}
	}
	n.labelWrites++
	return true, nil
}

func (n *fakeNode) SetTaint(_ context.Context, taint corev1.Taint, present bool) (bool, error) {
	if n.patchErr != nil {
		return false, n.patchErr
	}
	taints := withTaint(n.taints, taint, present)
	if slices.Equal(taints, n.taints) {
		return false, nil
	}
	n.taints = taints
	n.taintWrites++
	return true, nil
}
func (n *fakeNode) Event(t, reason, action, note string) {
	n.events = append(n.events, event{t, reason, action, note})
}

func (n *fakeNode) reasons() []string {
	var r []string
	for _, e := range n.events {
		r = append(r, e.Reason)
	}
	return r
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const (
	grace = 10 * time.Minute
	gib   = uint64(1 << 30)
)

// vm is a pod UVM of sandbox sb started `age` before t0.
func vm(sb string, age time.Duration, memGiB uint64) UtilityVM {
	return UtilityVM{ID: sb + "@vm", Owner: "containerd-shim-runhcs-v1.exe", State: "Running",
		Created: t0.Add(-age), MemoryAssignedBytes: memGiB * gib, ScratchDiskBytes: gib}
}

func ref(sb string) PodRef {
	return PodRef{Namespace: "team-a", Name: "pod-" + sb, UID: types.UID("uid-" + sb), SandboxID: sb}
}

type harness struct {
	host     *fakeHost
	resolver *fakeResolver
	pods     *fakePods
	node     *fakeNode
	agent    *Agent
	reg      *prometheus.Registry
	now      time.Time
}

func newHarness(reap bool, vms []UtilityVM, sandboxes []PodRef, podUIDs ...types.UID) *harness {
	h := &harness{
		host:     &fakeHost{vms: vms},
		resolver: &fakeResolver{sandboxes: map[string]PodRef{}},
		pods:     &fakePods{uids: podUIDs},
		node:     &fakeNode{},
		reg:      prometheus.NewRegistry(),
		now:      t0,
	}
	for _, r := range sandboxes {
		h.resolver.sandboxes[r.SandboxID] = r
	}
	h.agent = &Agent{
		Config:   Config{NodeName: "win-1", Reap: reap, GracePeriod: grace, Interval: time.Second},
		Host:     h.host,
		Resolver: h.resolver,
		Pods:     h.pods,
		Node:     h.node,
		Metrics:  NewMetrics(h.reg),
		Log:      logr.Discard(),
		Now:      func() time.Time { return h.now },
	}
	return h
}

func (h *harness) round(t *testing.T) Report {
	t.Helper()
	r, err := h.agent.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return r
}

func verdicts(r Report) map[string]Verdict {
	m := map[string]Verdict{}
	for _, f := range r.Findings {
		m[f.VM.ID] = f.Verdict
	}
	return m
}
