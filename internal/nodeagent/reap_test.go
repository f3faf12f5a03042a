package nodeagent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDryRunReportsOnly(t *testing.T) {
	leaked := vm("aaa", time.Hour, 2)
	leaked.HostMemoryBytes = gib + gib/2 // its vmmem working set: the memory the leak holds
	h := newHarness(false, []UtilityVM{leaked, vm("bbb", time.Hour, 1)},
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
	if r.Summary != (Summary{VMs: 2, MemoryBytes: 2*gib + gib/2, ScratchBytes: 2 * gib, Orphans: 1, LeakedBytes: gib + gib/2}) {
		t.Errorf("summary = %+v", r.Summary)
	}
	if got := h.node.annotation; got != "vms=2 memory=2560Mi scratch=2Gi orphans=1 unattributed=0 leaked=1536Mi sizeMismatches=0" {
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
