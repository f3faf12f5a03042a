package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

type fakeRuntimeConfig struct {
	config []byte
	err    error
}

func (f *fakeRuntimeConfig) ReadRuntimeConfig(context.Context) ([]byte, error) {
	return f.config, f.err
}

type fakeRuntimeClasses struct {
	classes []nodev1.RuntimeClass
	err     error
}

func (f *fakeRuntimeClasses) ListRuntimeClasses(context.Context) ([]nodev1.RuntimeClass, error) {
	return slices.Clone(f.classes), f.err
}

// runtimeClass is a RuntimeClass named after its handler; a nil selector means no scheduling.
func runtimeClass(handler string, selector map[string]string) nodev1.RuntimeClass {
	rc := nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: handler}, Handler: handler}
	if selector != nil {
		rc.Scheduling = &nodev1.Scheduling{NodeSelector: selector}
	}
	return rc
}

// handlerKind is how a handler is configured in containerdConfig.
type handlerKind int

const (
	hypervGood    handlerKind = iota // runhcs, Hyper-V, passes io.microsoft.virtualmachine.*
	hypervNoAnnot                    // runhcs, Hyper-V, no pod_annotations
	process                          // runhcs, process isolation
)

// containerdConfig is a version-3 effective configuration (containerd 2) with the handlers.
func containerdConfig(handlers map[string]handlerKind) []byte {
	var b strings.Builder
	b.WriteString("version = 3\n")
	for _, name := range slices.Sorted(maps.Keys(handlers)) {
		table := "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes." + name
		fmt.Fprintf(&b, "[%s]\nruntime_type = 'io.containerd.runhcs.v1'\n", table)
		if handlers[name] == hypervGood {
			b.WriteString("pod_annotations = ['io.microsoft.virtualmachine.*']\n")
		}
		isolation := 1
		if handlers[name] == process {
			isolation = 0
		}
		fmt.Fprintf(&b, "[%s.options]\nSandboxIsolation = %d\n", table, isolation)
	}
	return []byte(b.String())
}

type runtimeHarness struct {
	config  *fakeRuntimeConfig
	classes *fakeRuntimeClasses
	node    *fakeNode
	check   *RuntimeCheck
	reg     *prometheus.Registry
}

func newRuntimeHarness(nodeLabels map[string]string) *runtimeHarness {
	h := &runtimeHarness{config: &fakeRuntimeConfig{}, classes: &fakeRuntimeClasses{}, node: &fakeNode{labels: nodeLabels},
		reg: prometheus.NewRegistry()}
	h.check = &RuntimeCheck{NodeName: "win-1", Config: h.config, Classes: h.classes, Node: h.node,
		Metrics: NewMetrics(h.reg), Log: logr.Discard()}
	return h
}

// published parses the runtime report on the fake Node.
func (h *runtimeHarness) published(t *testing.T) runtimereport.Report {
	t.Helper()
	r, ok, err := runtimereport.Parse(h.node.others[runtimereport.Annotation])
	if err != nil || !ok {
		t.Fatalf("runtime annotation %q: ok %t, %v", h.node.others[runtimereport.Annotation], ok, err)
	}
	return r
}

func TestRuntimeCheck(t *testing.T) {
	good := containerdConfig(map[string]handlerKind{"hv": hypervGood, "hv2": hypervGood, "proc": process})
	noAnnot := containerdConfig(map[string]handlerKind{"hv": hypervNoAnnot, "hv2": hypervGood, "proc": process})
	verified := func(handlers ...string) map[string]string {
		m := map[string]string{}
		for _, h := range handlers {
			m[runtimereport.LabelKey(h)] = runtimereport.LabelValue
		}
		return m
	}
	type step struct {
		config  []byte
		readErr error
		classes []nodev1.RuntimeClass
		// What the Node has after the step: the labels under the prefix, the annotation's
		// problems by handler (or its Error, a substring), and how many writes so far.
		wantLabels      map[string]string
		wantProblems    map[string]runtimereport.Problem
		wantError       string
		wantLabelWrites int
		wantAnnotWrites int
		wantReady       map[string]float64 // hyperpool_node_runtime_handler_ready, every series
		wantEvents      []string
	}
	hv, hv2, proc := runtimeClass("hv", nil), runtimeClass("hv2", map[string]string{"kubernetes.io/os": "windows"}), runtimeClass("proc", nil)
	for _, tc := range []struct {
		name   string
		labels map[string]string // the Node's labels at the start
		steps  []step
	}{
		{name: "ready handler: label and annotation; not ready: neither", steps: []step{{
			config: good, classes: []nodev1.RuntimeClass{hv, proc},
			wantLabels: verified("hv"), wantProblems: map[string]runtimereport.Problem{"hv": "", "proc": runtimereport.NotHyperV},
			wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"hv": 1, "proc": 0},
		}}},
		{name: "annotations dropped: no label, a Warning", steps: []step{{
			config: noAnnot, classes: []nodev1.RuntimeClass{hv},
			wantLabels: verified(), wantProblems: map[string]runtimereport.Problem{"hv": runtimereport.AnnotationsDropped},
			wantLabelWrites: 0, wantAnnotWrites: 1, wantReady: map[string]float64{"hv": 0},
			wantEvents: []string{ReasonRuntimeHandlerNotReady},
		}}},
		{name: "label removed when the handler turns bad, back when fixed", steps: []step{{
			config: good, classes: []nodev1.RuntimeClass{hv, hv2},
			wantLabels: verified("hv", "hv2"), wantProblems: map[string]runtimereport.Problem{"hv": "", "hv2": ""},
			wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"hv": 1, "hv2": 1},
		}, {
			config: noAnnot, classes: []nodev1.RuntimeClass{hv, hv2},
			wantLabels: verified("hv2"), wantProblems: map[string]runtimereport.Problem{"hv": runtimereport.AnnotationsDropped, "hv2": ""},
			wantLabelWrites: 2, wantAnnotWrites: 2, wantReady: map[string]float64{"hv": 0, "hv2": 1},
			wantEvents: []string{ReasonRuntimeHandlerNotReady},
		}, {
			config: good, classes: []nodev1.RuntimeClass{hv, hv2},
			wantLabels: verified("hv", "hv2"), wantProblems: map[string]runtimereport.Problem{"hv": "", "hv2": ""},
			wantLabelWrites: 3, wantAnnotWrites: 3, wantReady: map[string]float64{"hv": 1, "hv2": 1},
			wantEvents: []string{ReasonRuntimeHandlerNotReady, ReasonRuntimeHandlerReady},
		}}},
		{name: "label removed when its RuntimeClass goes", steps: []step{{
			config: good, classes: []nodev1.RuntimeClass{hv, hv2},
			wantLabels: verified("hv", "hv2"), wantProblems: map[string]runtimereport.Problem{"hv": "", "hv2": ""},
			wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"hv": 1, "hv2": 1},
		}, {
			config: good, classes: []nodev1.RuntimeClass{hv2},
			wantLabels: verified("hv2"), wantProblems: map[string]runtimereport.Problem{"hv2": ""},
			wantLabelWrites: 2, wantAnnotWrites: 2, wantReady: map[string]float64{"hv2": 1},
		}}},
		{name: "config read failure: Error in the annotation, labels removed, others kept", steps: []step{{
			config: good, classes: []nodev1.RuntimeClass{hv},
			wantLabels: verified("hv"), wantProblems: map[string]runtimereport.Problem{"hv": ""},
			wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"hv": 1},
		}, {
			readErr: errors.New("containerd.exe: file not found"), classes: []nodev1.RuntimeClass{hv},
			wantLabels: verified(), wantError: "reading containerd's configuration: containerd.exe: file not found",
			wantLabelWrites: 2, wantAnnotWrites: 2, wantReady: map[string]float64{"hv": 0},
			wantEvents: []string{ReasonRuntimeConfigUnreadable},
		}, {
			readErr: errors.New("containerd.exe: file not found"), classes: []nodev1.RuntimeClass{hv},
			wantLabels: verified(), wantError: "file not found",
			wantLabelWrites: 2, wantAnnotWrites: 2, wantReady: map[string]float64{"hv": 0},
			wantEvents: []string{ReasonRuntimeConfigUnreadable}, // once, not every round
		}}},
		{name: "RuntimeClass whose nodeSelector does not match the node is not checked", steps: []step{{
			config: good, classes: []nodev1.RuntimeClass{runtimeClass("hv", map[string]string{"kubernetes.io/os": "linux"}), hv2},
			wantLabels: verified("hv2"), wantProblems: map[string]runtimereport.Problem{"hv2": ""},
			wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"hv2": 1},
		}}},
		{name: "no write when nothing changed", steps: []step{{
			config: good, classes: []nodev1.RuntimeClass{hv},
			wantLabels: verified("hv"), wantProblems: map[string]runtimereport.Problem{"hv": ""},
			wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"hv": 1},
		}, {
			config: good, classes: []nodev1.RuntimeClass{hv},
			wantLabels: verified("hv"), wantProblems: map[string]runtimereport.Problem{"hv": ""},
			wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"hv": 1},
		}, {
			config: noAnnot, classes: []nodev1.RuntimeClass{proc},
			wantLabels: verified(), wantProblems: map[string]runtimereport.Problem{"proc": runtimereport.NotHyperV},
			wantLabelWrites: 2, wantAnnotWrites: 2, wantReady: map[string]float64{"proc": 0},
		}, {
			config: noAnnot, classes: []nodev1.RuntimeClass{proc},
			wantLabels: verified(), wantProblems: map[string]runtimereport.Problem{"proc": runtimereport.NotHyperV},
			wantLabelWrites: 2, wantAnnotWrites: 2, wantReady: map[string]float64{"proc": 0},
		}}},
		{name: "a stale label of a handler no class names any more is removed at start",
			labels: map[string]string{"kubernetes.io/os": "windows", runtimereport.LabelKey("old"): runtimereport.LabelValue},
			steps: []step{{
				config: good, classes: []nodev1.RuntimeClass{proc},
				wantLabels: verified(), wantProblems: map[string]runtimereport.Problem{"proc": runtimereport.NotHyperV},
				wantLabelWrites: 1, wantAnnotWrites: 1, wantReady: map[string]float64{"proc": 0},
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			labels := tc.labels
			if labels == nil {
				labels = map[string]string{"kubernetes.io/os": "windows"}
			}
			labels["example.com/kept"] = "yes"
			h := newRuntimeHarness(labels)
			for i, s := range tc.steps {
				h.config.config, h.config.err, h.classes.classes = s.config, s.readErr, s.classes
				report, err := h.check.CheckOnce(context.Background())
				if (err != nil) != (s.readErr != nil) {
					t.Fatalf("step %d: CheckOnce error %v, want one: %t", i, err, s.readErr != nil)
				}
				if got := runtimeLabelsOf(h.node.labels); !maps.Equal(got, s.wantLabels) {
					t.Errorf("step %d: runtime labels %v, want %v", i, got, s.wantLabels)
				}
				if h.node.labels["example.com/kept"] != "yes" || h.node.labels["kubernetes.io/os"] != "windows" {
					t.Errorf("step %d: other labels not kept: %v", i, h.node.labels)
				}
				pub := h.published(t)
				if pub.Error != report.Error || !strings.Contains(pub.Error, s.wantError) || (s.wantError == "") != (pub.Error == "") {
					t.Errorf("step %d: annotation error %q (returned %q), want %q", i, pub.Error, report.Error, s.wantError)
				}
				problems := map[string]runtimereport.Problem{}
				for _, hr := range pub.Handlers {
					problems[hr.Handler] = hr.Problem()
				}
				if s.wantError == "" && !maps.Equal(problems, s.wantProblems) {
					t.Errorf("step %d: annotation problems %v, want %v (%s)", i, problems, s.wantProblems, h.node.others[runtimereport.Annotation])
				}
				if h.node.labelWrites != s.wantLabelWrites || len(h.node.otherPatches) != s.wantAnnotWrites {
					t.Errorf("step %d: %d label writes and %d annotation writes, want %d and %d", i,
						h.node.labelWrites, len(h.node.otherPatches), s.wantLabelWrites, s.wantAnnotWrites)
				}
				if n := testutil.CollectAndCount(h.check.Metrics.RuntimeHandlerReady); n != len(s.wantReady) {
					t.Errorf("step %d: %d handler_ready series, want %d", i, n, len(s.wantReady))
				}
				for handler, want := range s.wantReady {
					if got := testutil.ToFloat64(h.check.Metrics.RuntimeHandlerReady.WithLabelValues(handler)); got != want {
						t.Errorf("step %d: handler_ready{%s} = %v, want %v", i, handler, got, want)
					}
				}
				if got := h.node.reasons(); !slices.Equal(got, s.wantEvents) {
					t.Errorf("step %d: events %v, want %v", i, got, s.wantEvents)
				}
			}
		})
	}
}

func runtimeLabelsOf(all map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if strings.HasPrefix(k, runtimereport.LabelPrefix) {
			out[k] = v
		}
	}
	return out
}

// The problem series: one per problem for each checked handler, 1 for its own; none while
// the configuration is unreadable; errors counted by step.
func TestRuntimeCheckMetrics(t *testing.T) {
	h := newRuntimeHarness(map[string]string{})
	h.config.config = containerdConfig(map[string]handlerKind{"hv": hypervNoAnnot, "proc": process})
	h.classes.classes = []nodev1.RuntimeClass{runtimeClass("hv", nil), runtimeClass("proc", nil), runtimeClass("gone", nil)}
	if _, err := h.check.CheckOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := h.check.Metrics
	for _, tc := range []struct {
		handler string
		problem runtimereport.Problem
		want    float64
	}{
		{"hv", runtimereport.AnnotationsDropped, 1}, {"hv", runtimereport.NotHyperV, 0}, {"hv", runtimereport.HandlerMissing, 0},
		{"proc", runtimereport.NotHyperV, 1}, {"proc", runtimereport.AnnotationsDropped, 0},
		{"gone", runtimereport.HandlerMissing, 1},
	} {
		if got := testutil.ToFloat64(m.RuntimeHandlerProblem.WithLabelValues(tc.handler, string(tc.problem))); got != tc.want {
			t.Errorf("handler_problem{%s,%s} = %v, want %v", tc.handler, tc.problem, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.RuntimeHandlerProblem); n != 9 {
		t.Errorf("%d problem series, want 3 handlers x 3 problems", n)
	}

	h.config.err = errors.New("boom")
	if _, err := h.check.CheckOnce(context.Background()); err == nil {
		t.Fatal("no error from an unreadable configuration")
	}
	if n := testutil.CollectAndCount(m.RuntimeHandlerProblem); n != 0 {
		t.Errorf("%d problem series while the configuration is unreadable, want none", n)
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("runtime-config")); got != 1 {
		t.Errorf("errors{runtime-config} = %v, want 1", got)
	}

	// The Node or the RuntimeClasses unreadable: nothing known, nothing written.
	h.config.err = nil
	writes := len(h.node.otherPatches)
	h.classes.err = errors.New("forbidden")
	if _, err := h.check.CheckOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "RuntimeClasses") {
		t.Errorf("RuntimeClass list failure: %v", err)
	}
	h.classes.err, h.node.getErr = nil, errors.New("timeout")
	if _, err := h.check.CheckOnce(context.Background()); err == nil {
		t.Error("no error from an unreadable Node")
	}
	if len(h.node.otherPatches) != writes || testutil.ToFloat64(m.Errors.WithLabelValues("runtime-classes")) != 1 ||
		testutil.ToFloat64(m.Errors.WithLabelValues("node")) != 1 {
		t.Errorf("after read failures: %d annotation writes (want %d), errors runtime-classes %v node %v", len(h.node.otherPatches), writes,
			testutil.ToFloat64(m.Errors.WithLabelValues("runtime-classes")), testutil.ToFloat64(m.Errors.WithLabelValues("node")))
	}
	// The documented names: 3 ready series (0 while unreadable), no problem series.
	if n, err := testutil.GatherAndCount(h.reg, "hyperpool_node_runtime_handler_ready", "hyperpool_node_runtime_handler_problem"); err != nil || n != 3 {
		t.Errorf("gathered %d series of the documented runtime metrics, want 3 (err %v)", n, err)
	}
}

func TestHandlersForNode(t *testing.T) {
	node := map[string]string{"kubernetes.io/os": "windows", "pool": "agents"}
	for _, tc := range []struct {
		name    string
		classes []nodev1.RuntimeClass
		want    []string
	}{
		{"no scheduling matches", []nodev1.RuntimeClass{runtimeClass("a", nil)}, []string{"a"}},
		{"empty nodeSelector matches", []nodev1.RuntimeClass{{Handler: "a", Scheduling: &nodev1.Scheduling{}}}, []string{"a"}},
		{"every selector label must match", []nodev1.RuntimeClass{
			runtimeClass("a", map[string]string{"kubernetes.io/os": "windows", "pool": "agents"}),
			runtimeClass("b", map[string]string{"kubernetes.io/os": "windows", "pool": "batch"}),
			runtimeClass("c", map[string]string{"kubernetes.io/os": "linux"}),
			runtimeClass("d", map[string]string{"missing": "x"}),
		}, []string{"a"}},
		{"sorted, once each, no empty handler", []nodev1.RuntimeClass{
			runtimeClass("b", nil), runtimeClass("a", nil), {ObjectMeta: metav1.ObjectMeta{Name: "b2"}, Handler: "b"}, runtimeClass("", nil),
		}, []string{"a", "b"}},
		{"no classes", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HandlersForNode(tc.classes, node); !slices.Equal(got, tc.want) {
				t.Errorf("HandlersForNode = %v, want %v", got, tc.want)
			}
		})
	}
}
