package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
)

func TestInventory(t *testing.T) {
	a, b, c := vm("aaa", time.Hour, 2), vm("bbb", time.Minute, 4), UtilityVM{ID: "standalone", MemoryAssignedBytes: gib / 2}
	// bbb is backed by virtual memory: its vmmem working set, 1 GiB of its 4, is what the
	// host holds for it; the others' working sets are unknown and count at their size.
	b.HostMemoryBytes = gib
	h := newHarness(false, []UtilityVM{a, b, c}, []PodRef{ref("aaa"), ref("bbb")}, "uid-aaa", "uid-bbb")
	r := h.round(t)

	want := Summary{VMs: 3, MemoryBytes: 3*gib + gib/2, ScratchBytes: 2 * gib, Orphans: 0, Unattributed: 1}
	if r.Summary != want {
		t.Fatalf("summary = %+v, want %+v", r.Summary, want)
	}
	if got := h.node.annotation; got != "vms=3 memory=3584Mi scratch=2Gi orphans=0 unattributed=1 leaked=0 sizeMismatches=0" {
		t.Errorf("annotation = %q", got)
	}
	for name, tc := range map[string]struct {
		c    prometheus.Collector
		want float64
	}{
		"vms":          {h.agent.Metrics.VMs, 3},
		"memory":       {h.agent.Metrics.MemoryBytes, float64(3*gib + gib/2)},
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
