package controllers

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

func TestRuntimeReadyCondition(t *testing.T) {
	t.Parallel()
	const h = "runhcs-wcow-hypervisor"
	ready := runtimereport.HandlerReport{Handler: h, Registered: true, HyperV: true, PodAnnotations: true}
	dropped := runtimereport.HandlerReport{Handler: h, Registered: true, HyperV: true, Detail: "pod_annotations [] drop ..."}
	process := runtimereport.HandlerReport{Handler: h, Registered: true, PodAnnotations: true, Detail: "options.SandboxIsolation 0"}
	missing := runtimereport.HandlerReport{Handler: h, Detail: "found under plugins.'io.containerd.grpc.v1.cri'"}
	on := func(node string, r runtimereport.HandlerReport) nodeHandlerReport {
		return nodeHandlerReport{node: node, HandlerReport: r}
	}
	many := func(n int, r runtimereport.HandlerReport) []nodeHandlerReport {
		var out []nodeHandlerReport
		for i := range n {
			out = append(out, on("node-"+string(rune('a'+i)), r))
		}
		return out
	}
	for _, tc := range []struct {
		name            string
		reports         []nodeHandlerReport
		requireVerified bool
		wantNil         bool
		status          metav1.ConditionStatus
		reason          string
		texts           []string
	}{
		{name: "no report, not required", wantNil: true},
		{name: "no report, required", requireVerified: true, status: metav1.ConditionFalse, reason: agentsv1alpha1.ReasonNoVerifiedNode,
			texts: []string{`no node agent has checked runtime handler "runhcs-wcow-hypervisor"`, "nodeAgent.enabled"}},
		{name: "all verified", reports: many(3, ready), status: metav1.ConditionTrue, reason: agentsv1alpha1.ReasonRuntimeVerified,
			texts: []string{"the node agents of 3 node(s)"}},
		{name: "one drops annotations", reports: []nodeHandlerReport{on("a", ready), on("b", dropped)}, status: metav1.ConditionFalse,
			reason: agentsv1alpha1.ReasonAnnotationsDropped,
			texts:  []string{"on 1 of 2 node(s)", "b (AnnotationsDropped)", "its pods may be scheduled there", "pod_annotations [] drop", "pod_annotations = ['io.microsoft.virtualmachine.*']"}},
		{name: "the worst problem is the reason, its detail quoted", reports: []nodeHandlerReport{on("a", dropped), on("b", missing), on("c", process)},
			requireVerified: true, status: metav1.ConditionFalse, reason: agentsv1alpha1.ReasonHandlerMissing,
			texts: []string{"3 of 3", "a (AnnotationsDropped), b (HandlerMissing), c (NotHyperV)", "go only to the 0 verified node(s)", "io.containerd.grpc.v1.cri", "containerd config dump"}},
		{name: "at most five nodes named", reports: many(7, process), status: metav1.ConditionFalse, reason: agentsv1alpha1.ReasonNotHyperV,
			texts: []string{"node-e (NotHyperV), and 2 more", "SandboxIsolation = 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := runtimeReadyCondition(h, tc.reports, tc.requireVerified, 4)
			if tc.wantNil {
				if c != nil {
					t.Fatalf("got %+v, want no condition", c)
				}
				return
			}
			if c == nil || c.Type != agentsv1alpha1.SandboxRuntimeReady || c.Status != tc.status || c.Reason != tc.reason || c.ObservedGeneration != 4 {
				t.Fatalf("got %+v, want %s %s (generation 4)", c, tc.status, tc.reason)
			}
			for _, text := range tc.texts {
				if !strings.Contains(c.Message, text) {
					t.Errorf("message %q does not say %q", c.Message, text)
				}
			}
			if strings.Contains(c.Message, "node-f (") || strings.Contains(c.Message, "node-g (") {
				t.Errorf("message names more than %d nodes: %q", maxNodesNamed, c.Message)
			}
		})
	}
}

func TestRuntimeReportsFollowTheNodes(t *testing.T) {
	t.Parallel()
	v := newRuntimeReports()
	report := func(hs ...runtimereport.HandlerReport) runtimereport.Report {
		return runtimereport.Report{ConfigVersion: 3, Handlers: hs}
	}
	a := runtimereport.HandlerReport{Handler: "a", Registered: true}
	b := runtimereport.HandlerReport{Handler: "b", Registered: true, HyperV: true}
	if !v.set("n1", report(a, b), true) || !v.set("n2", report(a), true) {
		t.Fatal("new reports did not count as changes")
	}
	if v.set("n2", report(a), true) {
		t.Error("the same report counted as a change")
	}
	if got := v.of("a"); len(got) != 2 || got[0].node != "n1" || got[1].node != "n2" {
		t.Errorf("of(a) = %+v, want n1 and n2", got)
	}
	v.set("n1", report(a), true) // n1 no longer checks b
	if got := v.of("b"); len(got) != 0 {
		t.Errorf("of(b) = %+v after n1 dropped it, want none", got)
	}
	v.set("n2", runtimereport.Report{}, false) // n2's agent went
	if got := v.of("a"); len(got) != 1 || got[0].node != "n1" {
		t.Errorf("of(a) = %+v after n2 went, want n1 only", got)
	}
}
