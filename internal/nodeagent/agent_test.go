package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

func TestInventory(t *testing.T) {
	a, b, c := vm("aaa", time.Hour, 2), vm("bbb", time.Minute, 4), UtilityVM{ID: "standalone", MemoryAssignedBytes: gib / 2}
	h := newHarness(false, []UtilityVM{a, b, c}, []PodRef{ref("aaa"), ref("bbb")}, "uid-aaa", "uid-bbb")
	r := h.round(t)

	want := Summary{VMs: 3, MemoryBytes: 6*gib + gib/2, ScratchBytes: 2 * gib, Orphans: 0, Unattributed: 1}
	if r.Summary != want {
		t.Fatalf("summary = %+v, want %+v", r.Summary, want)
	}
	if got := h.node.annotation; got != "vms=3 memory=6656Mi scratch=2Gi orphans=0 unattributed=1 leaked=0 sizeMismatches=0" {
		t.Errorf("annotation = %q", got)
	}
	for name, tc := range map[string]struct {
		c    prometheus.Collector
		want float64
	}{
		"vms":          {h.agent.Metrics.VMs, 3},
		"memory":       {h.agent.Metrics.MemoryBytes, float64(6*gib + gib/2)},
		"scratch":      {h.agent.Metrics.ScratchBytes, float64(2 * gib)},
		"orphans":      {h.agent.Metrics.Orphans, 0},
		"unattributed": {h.agent.Metrics.Unattributed, 1},
		"reaped":       {h.agent.Metrics.Reaped, 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("metric %s = %v, want %v", name, got, tc.want)
		}
	}
	if got := verdicts(r); got["aaa@vm"] != VerdictLive || got["bbb@vm"] != VerdictLive || got["standalone"] != VerdictUnattributed {
		t.Errorf("verdicts = %v", got)
	}
	// The metric names are the documented ones.
	if n, err := testutil.GatherAndCount(h.reg, "hyperpool_node_vms", "hyperpool_node_vm_memory_bytes",
		"hyperpool_node_vm_scratch_bytes", "hyperpool_node_orphan_vms", "hyperpool_node_orphans_reaped_total"); err != nil || n != 5 {
		t.Errorf("gathered %d of the 5 documented metrics (err %v)", n, err)
	}
}

func TestScratchReporterOverridesPerVMSum(t *testing.T) {
	h := newHarness(false, []UtilityVM{vm("aaa", time.Hour, 1)}, []PodRef{ref("aaa")}, "uid-aaa")
	total := 40 * gib
	h.agent.Host = scratchHost{h.host}
	h.host.scratch = &total
	if r := h.round(t); r.Summary.ScratchBytes != total {
		t.Errorf("scratch = %d, want the node-wide %d", r.Summary.ScratchBytes, total)
	}
	h.host.scratchErr = errors.New("access denied")
	if _, err := h.agent.RunOnce(context.Background()); err == nil {
		t.Error("a failed scratch measurement is not reported as an error")
	}
}

func TestSummaryAnnotationPatchedOnlyWhenChanged(t *testing.T) {
	h := newHarness(false, []UtilityVM{vm("aaa", time.Hour, 1)}, []PodRef{ref("aaa")}, "uid-aaa")
	h.node.annotation = "vms=1 memory=1Gi scratch=1Gi orphans=0 unattributed=0 leaked=0 sizeMismatches=0" // already right
	h.round(t)
	h.round(t)
	if len(h.node.patches) != 0 {
		t.Fatalf("patched an unchanged annotation: %v", h.node.patches)
	}
	h.host.vms = append(h.host.vms, vm("bbb", time.Hour, 1))
	h.resolver.sandboxes["bbb"] = ref("bbb")
	h.pods.uids = append(h.pods.uids, "uid-bbb")
	h.round(t)
	h.round(t)
	if want := []string{"vms=2 memory=2Gi scratch=2Gi orphans=0 unattributed=0 leaked=0 sizeMismatches=0"}; !slices.Equal(h.node.patches, want) {
		t.Fatalf("patches = %v, want %v", h.node.patches, want)
	}
	// A failed patch is retried on the next round, after reading the Node again.
	h.host.vms = h.host.vms[:1]
	h.node.patchErr = errors.New("conflict")
	if _, err := h.agent.RunOnce(context.Background()); err == nil {
		t.Fatal("failed patch not reported")
	}
	h.node.patchErr = nil
	h.round(t)
	if got := h.node.annotation; got != "vms=1 memory=1Gi scratch=1Gi orphans=0 unattributed=0 leaked=0 sizeMismatches=0" {
		t.Errorf("annotation after retry = %q", got)
	}
}

func TestAttribution(t *testing.T) {
	vms := []UtilityVM{
		vm("known", time.Hour, 1),
		vm("unknown-sandbox", time.Hour, 1),
		{ID: "not-a-pod-uvm", Created: t0.Add(-time.Hour)},
		{ID: "@vm", Created: t0.Add(-time.Hour)},
	}
	h := newHarness(true, vms, []PodRef{ref("known"), {Namespace: "x", Name: "no-uid", SandboxID: "unknown-sandbox"}})
	h.now = t0.Add(2 * grace)
	h.round(t) // first sight of the missing pod
	h.now = h.now.Add(2 * grace)
	r := h.round(t)
	want := map[string]Verdict{
		"known@vm":           VerdictOrphan,
		"unknown-sandbox@vm": VerdictUnattributed, // the runtime gave no UID
		"not-a-pod-uvm":      VerdictUnattributed,
		"@vm":                VerdictUnattributed,
	}
	if got := verdicts(r); !equalMaps(got, want) {
		t.Fatalf("verdicts = %v, want %v", got, want)
	}
	for _, f := range r.Findings {
		if f.Verdict == VerdictUnattributed && f.Reaped {
			t.Errorf("reaped unattributed VM %s", f.VM.ID)
		}
		if f.VM.ID == "known@vm" && (f.Pod == nil || *f.Pod != ref("known")) {
			t.Errorf("known@vm attributed to %v, want %v", f.Pod, ref("known"))
		}
	}
	if !slices.Equal(h.host.terminated, []string{"known@vm"}) {
		t.Errorf("terminated %v, want only known@vm", h.host.terminated)
	}
}

// The runtime forgets a sandbox when the kubelet removes it, which is when a VM leaks: an
// attribution learned earlier must survive that, and runtime errors.
func TestAttributionOutlivesTheRuntimeRecord(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", time.Hour, 1)}, []PodRef{ref("aaa")}, "uid-aaa")
	h.round(t) // learns aaa -> uid-aaa while the pod is alive

	// The pod is deleted; containerd removes the sandbox; the VM leaks.
	h.pods.uids = nil
	h.resolver.sandboxes = map[string]PodRef{}
	h.now = t0.Add(time.Minute)
	if v := verdicts(h.round(t))["aaa@vm"]; v != VerdictPending {
		t.Fatalf("just after the pod went: %s, want Pending", v)
	}
	h.resolver.err = errors.New("pipe busy")
	h.now = t0.Add(time.Minute + grace)
	r, err := h.agent.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "pipe busy") {
		t.Errorf("runtime error not reported: %v", err)
	}
	if v := verdicts(r)["aaa@vm"]; v != VerdictOrphan || !r.Findings[0].Reaped {
		t.Fatalf("leaked VM: verdict %s reaped %v, want reaped Orphan", v, r.Findings[0].Reaped)
	}

	// An agent that never saw the sandbox cannot attribute the VM and leaves it alone.
	fresh := newHarness(true, []UtilityVM{vm("bbb", 5*time.Hour, 1)}, nil)
	for i := range 3 {
		fresh.now = t0.Add(time.Duration(i) * time.Hour)
		if v := verdicts(fresh.round(t))["bbb@vm"]; v != VerdictUnattributed {
			t.Fatalf("round %d: %s, want Unattributed", i, v)
		}
	}
	if len(fresh.host.terminated) != 0 {
		t.Errorf("terminated unattributable VMs: %v", fresh.host.terminated)
	}
}

func TestNilResolverAttributesNothing(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", time.Hour, 1)}, nil)
	h.agent.Resolver = nil
	h.now = t0.Add(time.Hour)
	h.round(t)
	if r := h.round(t); r.Findings[0].Verdict != VerdictUnattributed || len(h.host.terminated) != 0 {
		t.Errorf("without a resolver: %+v, terminated %v", r.Findings[0], h.host.terminated)
	}
}

func TestGracePeriod(t *testing.T) {
	tests := []struct {
		name       string
		age        time.Duration // of the VM at t0
		missingFor time.Duration // how long before t0 the pod was first seen missing
		unknownAge bool
		want       Verdict
		wantReaped bool
		wantRounds int
	}{
		{name: "old VM, pod just gone", age: time.Hour, missingFor: 0, want: VerdictPending},
		{name: "old VM, pod gone almost a grace period", age: time.Hour, missingFor: grace - time.Second, want: VerdictPending},
		{name: "old VM, pod gone a grace period", age: time.Hour, missingFor: grace, want: VerdictOrphan, wantReaped: true},
		{name: "young VM, pod gone long", age: grace - time.Second, missingFor: grace - time.Second, want: VerdictPending},
		{name: "VM exactly a grace period old", age: grace, missingFor: grace, want: VerdictOrphan, wantReaped: true},
		{name: "VM of unknown age", unknownAge: true, missingFor: 10 * grace, want: VerdictPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := vm("aaa", tc.age, 1)
			if tc.unknownAge {
				v.Created = time.Time{}
			}
			h := newHarness(true, []UtilityVM{v}, []PodRef{ref("aaa")}) // the pod is gone
			h.now = t0.Add(-tc.missingFor)
			h.round(t)
			h.now = t0
			r := h.round(t)
			if got := r.Findings[0].Verdict; got != tc.want {
				t.Errorf("verdict = %s, want %s", got, tc.want)
			}
			if got := r.Findings[0].Reaped; got != tc.wantReaped {
				t.Errorf("reaped = %v, want %v", got, tc.wantReaped)
			}
		})
	}
}

func TestDryRunReportsOnly(t *testing.T) {
	h := newHarness(false, []UtilityVM{vm("aaa", time.Hour, 2), vm("bbb", time.Hour, 1)},
		[]PodRef{ref("aaa"), ref("bbb")}, "uid-bbb")
	h.now = t0.Add(-grace)
	h.round(t)
	h.now = t0
	r := h.round(t)
	h.round(t) // a third round announces nothing new

	if len(h.host.terminated) != 0 {
		t.Fatalf("dry run terminated %v", h.host.terminated)
	}
	if v := verdicts(r); v["aaa@vm"] != VerdictOrphan || v["bbb@vm"] != VerdictLive {
		t.Fatalf("verdicts = %v", v)
	}
	if got := h.node.reasons(); !slices.Equal(got, []string{ReasonLeakedVM}) {
		t.Fatalf("events = %v, want one %s", got, ReasonLeakedVM)
	}
	e := h.node.events[0]
	for _, s := range []string{"Warning", "aaa@vm", "team-a/pod-aaa", "uid-aaa", "dry run"} {
		if !strings.Contains(e.Type+" "+e.Note, s) {
			t.Errorf("event %+v does not mention %q", e, s)
		}
	}
	if got := testutil.ToFloat64(h.agent.Metrics.Orphans); got != 1 {
		t.Errorf("orphan gauge = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.Reaped); got != 0 {
		t.Errorf("reaped counter = %v, want 0", got)
	}
	if r.Summary != (Summary{VMs: 2, MemoryBytes: 3 * gib, ScratchBytes: 2 * gib, Orphans: 1, LeakedBytes: 2 * gib}) {
		t.Errorf("summary = %+v", r.Summary)
	}
	if got := h.node.annotation; got != "vms=2 memory=3Gi scratch=2Gi orphans=1 unattributed=0 leaked=2Gi sizeMismatches=0" {
		t.Errorf("annotation = %q", got)
	}
}

func TestReap(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", time.Hour, 2), vm("bbb", time.Hour, 1)},
		[]PodRef{ref("aaa"), ref("bbb")}, "uid-bbb")
	h.now = t0.Add(-grace)
	h.round(t)
	h.now = t0
	r := h.round(t)

	if !slices.Equal(h.host.terminated, []string{"aaa@vm"}) {
		t.Fatalf("terminated %v, want [aaa@vm]", h.host.terminated)
	}
	if got := h.node.reasons(); !slices.Equal(got, []string{ReasonReapedVM}) {
		t.Errorf("events = %v", got)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.Reaped); got != 1 {
		t.Errorf("reaped counter = %v, want 1", got)
	}
	// The summary is what is left after reaping.
	if r.Summary != (Summary{VMs: 1, MemoryBytes: gib, ScratchBytes: gib}) {
		t.Errorf("summary = %+v", r.Summary)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.Orphans); got != 0 {
		t.Errorf("orphan gauge = %v, want 0", got)
	}
	h.round(t)
	if len(h.host.terminated) != 1 {
		t.Errorf("terminated again: %v", h.host.terminated)
	}
}

func TestReapFailure(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", time.Hour, 2)}, []PodRef{ref("aaa")})
	h.host.terminateErr = errors.New("HCS: access denied")
	h.now = t0.Add(-grace)
	h.round(t)
	h.now = t0
	r := h.round(t)
	h.round(t)
	f := r.Findings[0]
	if f.Reaped || f.ReapError == nil || f.Verdict != VerdictOrphan {
		t.Fatalf("finding = %+v", f)
	}
	if got := h.node.reasons(); !slices.Equal(got, []string{ReasonReapFailed}) {
		t.Errorf("events = %v, want one %s", got, ReasonReapFailed)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.ReapFailures); got != 2 {
		t.Errorf("reap failures = %v, want 2", got)
	}
	if r.Summary.Orphans != 1 || r.Summary.VMs != 1 {
		t.Errorf("summary = %+v", r.Summary)
	}
}

// Whatever the ages and rounds, a VM whose pod exists is never terminated.
func TestLiveVMNeverReaped(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", 1000*time.Hour, 8)}, []PodRef{ref("aaa")}, "uid-aaa")
	for i := range 50 {
		h.now = t0.Add(time.Duration(i) * grace)
		if i == 10 {
			h.resolver.sandboxes = nil // the runtime forgets; the pod still exists
		}
		if i == 20 {
			h.resolver.err = errors.New("down")
		}
		r, _ := h.agent.RunOnce(context.Background())
		if v := r.Findings[0].Verdict; v != VerdictLive {
			t.Fatalf("round %d: verdict %s, want Live", i, v)
		}
	}
	if len(h.host.terminated) != 0 || len(h.node.events) != 0 {
		t.Errorf("terminated %v, events %v", h.host.terminated, h.node.events)
	}
}

// A VM whose sandbox the runtime lists as ready is never reaped, whatever the API server
// says (here the pod is missing from it all along: force-deleted, or an incomplete read).
// It is reported once it has been so for a grace period. Once the runtime stops listing it
// as ready, it gets a whole grace period before it is judged leaked.
func TestReadySandboxNeverReaped(t *testing.T) {
	type round struct {
		at      time.Duration // after t0
		runtime string        // the sandbox in the runtime: "ready", "notready", "gone" (forgotten) or "error"
		want    Verdict
	}
	tests := []struct {
		name       string
		reap       bool
		rounds     []round
		wantReaped bool
		wantEvents []string
	}{
		{name: "ready for ten grace periods", reap: true,
			rounds:     []round{{0, "ready", VerdictSandboxReady}, {grace, "ready", VerdictSandboxReady}, {10 * grace, "ready", VerdictSandboxReady}},
			wantEvents: []string{ReasonReadyWithoutPod}},
		{name: "ready, dry run", reap: false,
			rounds:     []round{{0, "ready", VerdictSandboxReady}, {grace, "ready", VerdictSandboxReady}, {10 * grace, "ready", VerdictSandboxReady}},
			wantEvents: []string{ReasonReadyWithoutPod}},
		{name: "ready, then the runtime cannot be listed: still ready", reap: true,
			rounds:     []round{{0, "ready", VerdictSandboxReady}, {grace, "error", VerdictSandboxReady}, {10 * grace, "error", VerdictSandboxReady}},
			wantEvents: []string{ReasonReadyWithoutPod}},
		{name: "ready briefly (a force-deleted pod being stopped): not reported", reap: true,
			rounds: []round{{0, "ready", VerdictSandboxReady}, {grace - time.Second, "ready", VerdictSandboxReady},
				{grace, "notready", VerdictPending}, {2*grace - time.Second, "notready", VerdictPending}}},
		{name: "ready, then stopped: a whole grace period to tear it down", reap: true,
			rounds: []round{{0, "ready", VerdictSandboxReady}, {5 * grace, "ready", VerdictSandboxReady},
				{6 * grace, "notready", VerdictPending}, {7*grace - time.Second, "notready", VerdictPending}, {7 * grace, "notready", VerdictOrphan}},
			wantReaped: true, wantEvents: []string{ReasonReadyWithoutPod, ReasonReapedVM}},
		{name: "ready, then forgotten by the runtime", reap: true,
			rounds:     []round{{0, "ready", VerdictSandboxReady}, {2 * grace, "gone", VerdictPending}, {3 * grace, "error", VerdictOrphan}},
			wantReaped: true, wantEvents: []string{ReasonReapedVM}},
		{name: "never ready", reap: true,
			rounds:     []round{{0, "notready", VerdictPending}, {grace, "notready", VerdictOrphan}},
			wantReaped: true, wantEvents: []string{ReasonReapedVM}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(tc.reap, []UtilityVM{vm("aaa", time.Hour, 4)}, nil) // no pod on the API server
			for _, rd := range tc.rounds {
				h.now = t0.Add(rd.at)
				h.resolver.err = nil
				switch rd.runtime {
				case "ready", "notready":
					r := ref("aaa")
					r.State = map[string]SandboxState{"ready": SandboxReady, "notready": SandboxNotReady}[rd.runtime]
					h.resolver.sandboxes = map[string]PodRef{"aaa": r}
				case "gone":
					h.resolver.sandboxes = map[string]PodRef{}
				case "error":
					h.resolver.err = errors.New("pipe busy")
				}
				r, _ := h.agent.RunOnce(context.Background())
				if len(r.Findings) == 0 {
					if rd.want != VerdictOrphan {
						t.Fatalf("at %s: the VM is gone", rd.at)
					}
					continue
				}
				f := r.Findings[0]
				if f.Verdict != rd.want {
					t.Fatalf("at %s (runtime %s): verdict %s, want %s", rd.at, rd.runtime, f.Verdict, rd.want)
				}
				if f.Verdict == VerdictSandboxReady && (f.Reaped || f.Pod == nil || f.Pod.State != SandboxReady) {
					t.Fatalf("at %s: finding %+v", rd.at, f)
				}
			}
			if reaped := len(h.host.terminated) > 0; reaped != tc.wantReaped {
				t.Errorf("terminated %v, want reaped %v", h.host.terminated, tc.wantReaped)
			}
			if got := h.node.reasons(); !slices.Equal(got, tc.wantEvents) {
				t.Errorf("events = %v, want %v", got, tc.wantEvents)
			}
			for _, e := range h.node.events {
				if e.Reason == ReasonReadyWithoutPod && (e.Type != "Warning" || !strings.Contains(e.Note, "aaa@vm") ||
					!strings.Contains(e.Note, "uid-aaa") || !strings.Contains(e.Note, "not reaped")) {
					t.Errorf("event %+v", e)
				}
			}
		})
	}
}

// A pod that reappears (the API server lagged, or the list was partial) resets the clock.
func TestPodReappearingResetsTheClock(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", time.Hour, 1)}, []PodRef{ref("aaa")})
	h.now = t0
	h.round(t) // missing since t0
	h.pods.uids = []types.UID{"uid-aaa"}
	h.now = t0.Add(grace / 2)
	h.round(t) // back
	h.pods.uids = nil
	h.now = t0.Add(grace + time.Minute)
	if v := verdicts(h.round(t))["aaa@vm"]; v != VerdictPending {
		t.Errorf("verdict = %s, want Pending: missing only since the last round", v)
	}
}

// A pod with the same namespace and name but a new UID (a recreated pod) is not the VM's pod.
func TestRecreatedPodIsNotTheVMsPod(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", time.Hour, 1)}, []PodRef{ref("aaa")}, "uid-of-the-new-pod")
	h.now = t0.Add(-grace)
	h.round(t)
	h.now = t0
	if v := verdicts(h.round(t))["aaa@vm"]; v != VerdictOrphan {
		t.Errorf("verdict = %s, want Orphan", v)
	}
}

func TestPodListErrorDecidesNothing(t *testing.T) {
	h := newHarness(true, []UtilityVM{vm("aaa", time.Hour, 1)}, []PodRef{ref("aaa")})
	h.node.annotation = "previous"
	h.pods.err = errors.New("apiserver unavailable")
	for i := range 5 {
		h.now = t0.Add(time.Duration(i) * grace)
		r, err := h.agent.RunOnce(context.Background())
		if err == nil {
			t.Fatal("pod list error not reported")
		}
		if r.PodsKnown || r.Findings[0].Verdict != VerdictPending {
			t.Fatalf("round %d: %+v", i, r)
		}
	}
	if len(h.host.terminated) != 0 || len(h.node.patches) != 0 {
		t.Errorf("terminated %v, patches %v", h.host.terminated, h.node.patches)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.Errors.WithLabelValues("pods")); got != 5 {
		t.Errorf("pods errors = %v", got)
	}
	// Missing-pod clocks did not run while the pods were unknown.
	h.pods.err = nil
	if v := verdicts(h.round(t))["aaa@vm"]; v != VerdictPending {
		t.Errorf("first round with pods: %s, want Pending", v)
	}
}

func TestHostErrorStopsTheRound(t *testing.T) {
	h := newHarness(true, nil, nil)
	h.host.listErr = errors.New("vmcompute: access denied")
	if _, err := h.agent.RunOnce(context.Background()); err == nil {
		t.Fatal("host error not reported")
	}
	if len(h.node.patches) != 0 {
		t.Errorf("patched after a failed inventory: %v", h.node.patches)
	}
}

// State about VMs that are gone is dropped, so the agent's memory is bounded by the VMs now.
func TestStateIsPrunedWithTheVMs(t *testing.T) {
	h := newHarness(false, nil, nil)
	for i := range 100 {
		sb := fmt.Sprintf("sb%d", i)
		h.host.vms = []UtilityVM{vm(sb, time.Hour, 1)}
		h.resolver.sandboxes = map[string]PodRef{sb: ref(sb)}
		h.now = t0.Add(time.Duration(i) * 2 * grace)
		h.round(t)
	}
	if n := len(h.agent.attributions) + len(h.agent.missingSince) + len(h.agent.readySince) + len(h.agent.announced); n > 3 {
		t.Errorf("agent keeps %d entries for 1 VM", n)
	}
}

func TestStartLoopsUntilCancelled(t *testing.T) {
	h := newHarness(false, nil, nil)
	h.agent.Config.Interval = time.Millisecond
	h.agent.Now = nil
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.host.onList = func(calls int) {
		if calls == 3 {
			cancel()
		}
	}
	h.host.listErr = errors.New("rounds keep coming after errors")
	if err := h.agent.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if h.host.listCallCount != 3 {
		t.Errorf("Start ran %d rounds, want 3 (then the context ended)", h.host.listCallCount)
	}
	if h.agent.NeedLeaderElection() {
		t.Error("the agent must run on every node")
	}
}

func equalMaps[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
