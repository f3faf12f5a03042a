package nodeagent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

var (
	leakTaint    = corev1.Taint{Key: DefaultLeakTaintKey, Effect: corev1.TaintEffectPreferNoSchedule}
	foreignTaint = corev1.Taint{Key: "example.com/gpu", Value: "none", Effect: corev1.TaintEffectNoSchedule}
)

func taintHarness(threshold uint64, vms []UtilityVM, sandboxes []PodRef, uids ...types.UID) *harness {
	h := newHarness(false, vms, sandboxes, uids...)
	h.agent.Config.LeakTaintKey, h.agent.Config.LeakTaintThreshold = DefaultLeakTaintKey, threshold
	h.node.taints = []corev1.Taint{foreignTaint}
	return h
}

// rounds runs n rounds, interval apart, and returns whether the leak taint is on the node after each.
func (h *harness) rounds(t *testing.T, n int) []bool {
	t.Helper()
	var out []bool
	for range n {
		h.round(t)
		h.now = h.now.Add(30 * time.Second)
		out = append(out, slices.ContainsFunc(h.node.taints, func(x corev1.Taint) bool { return x.MatchTaint(&leakTaint) }))
	}
	return out
}

func TestLeakTaint(t *testing.T) {
	aaa, bbb := vm("aaa", time.Hour, 3), vm("bbb", time.Hour, 1)
	sandboxes := []PodRef{ref("aaa"), ref("bbb")}
	tests := []struct {
		name      string
		threshold uint64
		vms       []UtilityVM
		uids      []types.UID // pods on the API server
		want      []bool      // tainted after each of three rounds
	}{
		{name: "every VM's pod is live: never", threshold: 2 * gib, vms: []UtilityVM{aaa, bbb}, uids: []types.UID{"uid-aaa", "uid-bbb"},
			want: []bool{false, false, false}},
		{name: "a 3Gi VM whose pod is gone: from the second round its pod is seen gone", threshold: 2 * gib, vms: []UtilityVM{aaa, bbb},
			uids: []types.UID{"uid-bbb"}, want: []bool{false, true, true}},
		{name: "leaked memory below the threshold: never", threshold: 2 * gib, vms: []UtilityVM{aaa, bbb},
			uids: []types.UID{"uid-aaa"}, want: []bool{false, false, false}},
		{name: "taint off (threshold 0): never", vms: []UtilityVM{aaa, bbb}, want: []bool{false, false, false}},
		{name: "unattributed VMs are not known to be leaked: never", threshold: gib,
			vms: []UtilityVM{{ID: "standalone", Created: t0.Add(-time.Hour), MemoryAssignedBytes: 8 * gib}}, want: []bool{false, false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := taintHarness(tc.threshold, tc.vms, sandboxes, tc.uids...)
			if got := h.rounds(t, 3); !slices.Equal(got, tc.want) {
				t.Errorf("tainted after each round = %v, want %v", got, tc.want)
			}
			if !slices.ContainsFunc(h.node.taints, func(x corev1.Taint) bool { return x == foreignTaint }) {
				t.Errorf("the node's other taint is gone: %v", h.node.taints)
			}
		})
	}
}

// The taint goes when the leaked memory is freed (here the VM is reaped by hand, as hcsdiag
// kill would), with an Event each way and the gauge following; the Node is written only on
// a change.
func TestLeakTaintRemovedWhenMemoryFreed(t *testing.T) {
	h := taintHarness(2*gib, []UtilityVM{vm("aaa", time.Hour, 3)}, []PodRef{ref("aaa")})
	if got := h.rounds(t, 3); !slices.Equal(got, []bool{false, true, true}) {
		t.Fatalf("tainted = %v, want from the second round", got)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.LeakTainted); got != 1 {
		t.Errorf("tainted gauge = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.LeakedBytes); got != float64(3*gib) {
		t.Errorf("leaked gauge = %v, want 3Gi", got)
	}
	h.host.vms = nil
	if got := h.rounds(t, 2); !slices.Equal(got, []bool{false, false}) {
		t.Fatalf("tainted after the VM is gone = %v", got)
	}
	if h.node.taintWrites != 2 || !slices.Equal(h.node.taints, []corev1.Taint{foreignTaint}) {
		t.Errorf("taint writes %d (want 2), taints %v", h.node.taintWrites, h.node.taints)
	}
	if got := h.node.reasons(); !slices.Equal(got, []string{ReasonLeakTainted, ReasonLeakUntainted}) {
		t.Errorf("events = %v", got)
	}
	if e := h.node.events[0]; e.Type != corev1.EventTypeWarning || !strings.Contains(e.Note, "3Gi") || !strings.Contains(e.Note, "2Gi threshold") {
		t.Errorf("taint event = %+v", e)
	}
	if got := testutil.ToFloat64(h.agent.Metrics.LeakTainted); got != 0 {
		t.Errorf("tainted gauge = %v, want 0", got)
	}
}

// With --reap the orphan is terminated after the grace period, and the taint goes with it.
func TestLeakTaintWithReap(t *testing.T) {
	h := taintHarness(2*gib, []UtilityVM{vm("aaa", time.Hour, 3)}, []PodRef{ref("aaa")})
	h.agent.Config.Reap = true
	h.rounds(t, 2)
	if !slices.Contains(h.node.taints, leakTaint) {
		t.Fatalf("inside the grace period the leaked VM taints the node: %v", h.node.taints)
	}
	h.now = h.now.Add(grace)
	h.rounds(t, 1)
	if len(h.host.terminated) != 1 || slices.Contains(h.node.taints, leakTaint) {
		t.Errorf("after the grace period: terminated %v, taints %v", h.host.terminated, h.node.taints)
	}
}

// A failed write is retried next round; nothing is written while pods cannot be listed.
func TestLeakTaintRetriedAndNotJudgedBlind(t *testing.T) {
	h := taintHarness(2*gib, []UtilityVM{vm("aaa", time.Hour, 3)}, []PodRef{ref("aaa")})
	h.round(t)
	h.now = h.now.Add(time.Second)
	h.node.patchErr = errors.New("conflict")
	if _, err := h.agent.RunOnce(context.Background()); err == nil || !strings.Contains(err.Error(), DefaultLeakTaintKey) {
		t.Fatalf("failed taint write: %v", err)
	}
	h.node.patchErr = nil
	h.round(t)
	if !slices.Contains(h.node.taints, leakTaint) {
		t.Fatalf("taint not retried: %v", h.node.taints)
	}
	h.pods.err = errors.New("apiserver down")
	h.host.vms = nil
	if _, err := h.agent.RunOnce(context.Background()); err == nil {
		t.Fatal("pod list error not reported")
	}
	if !slices.Contains(h.node.taints, leakTaint) {
		t.Errorf("taint removed in a round that could not list pods: %v", h.node.taints)
	}
}
