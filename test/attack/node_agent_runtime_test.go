//go:build !windows

package attack

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hyperpool/hyperpool/internal/nodeagent"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

// staticRuntimeConfig is containerd's effective configuration as `containerd config dump`
// would print it on the node.
type staticRuntimeConfig struct{ config []byte }

func (c *staticRuntimeConfig) ReadRuntimeConfig(context.Context) ([]byte, error) {
	return c.config, nil
}

// runtimeConfigTOML is a containerd 2 configuration with one Hyper-V handler, passing
// hcsshim's sizing annotations or not.
func runtimeConfigTOML(handler string, passAnnotations bool) []byte {
	table := "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes." + handler
	annotations := ""
	if passAnnotations {
		annotations = "pod_annotations = ['io.microsoft.virtualmachine.*']\n"
	}
	return fmt.Appendf(nil, "version = 3\n[%s]\nruntime_type = 'io.containerd.runhcs.v1'\n%s[%s.options]\nSandboxIsolation = 1\n",
		table, annotations, table)
}

// The node agent's runtime check, as its own identity with the chart's RBAC and admission
// policy, against the real API server over a fake containerd: it lists the RuntimeClasses,
// checks the handler of the one whose nodeSelector matches its Node (not the other's),
// publishes agents.hyperpool.io/runtime-handlers and labels its Node
// runtime.agents.hyperpool.io/<handler>=verified, and removes the label when the handler
// turns bad. The policy lets it do exactly that: no other label, no other value, no other
// Node.
func TestNodeAgentRuntimeCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	installNodeAgentPolicy(t)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000)
	mine, other := "runtime-agent-"+suffix+"-0", "runtime-agent-"+suffix+"-1"
	pool := "runtime-" + suffix
	for _, name := range []string{mine, other} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"hyperpool.io/test": "runtime", "example.com/pool": pool}},
			Spec: corev1.NodeSpec{Unschedulable: true}}
		mustCreate(t, admin, node)
		t.Cleanup(func() { _ = admin.Delete(context.Background(), node) })
	}
	// One class for this test's nodes, one for nodes that do not exist.
	here, elsewhere := "hv-"+suffix, "far-"+suffix
	for handler, selected := range map[string]string{here: pool, elsewhere: "nowhere-" + suffix} {
		rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: handler}, Handler: handler,
			Scheduling: &nodev1.Scheduling{NodeSelector: map[string]string{"example.com/pool": selected}}}
		mustCreate(t, admin, rc)
		t.Cleanup(func() { _ = admin.Delete(context.Background(), rc) })
	}

	agent := impersonate(t, nodeAgentIdentity(nodeAgentUser, mine),
		func(ctx context.Context, c client.Client) error { // the chart's RBAC, in force
			if _, err := nodeagent.CheckNode(ctx, c, mine); err != nil {
				return err
			}
			_, err := nodeagent.APIRuntimeClassLister{Reader: c}.ListRuntimeClasses(ctx)
			return err
		})
	config := &staticRuntimeConfig{config: runtimeConfigTOML(here, true)}
	check := &nodeagent.RuntimeCheck{NodeName: mine, Config: config,
		Classes: nodeagent.APIRuntimeClassLister{Reader: agent},
		Node:    nodeagent.KubeNode{Reader: agent, Client: agent, Recorder: events.NewFakeRecorder(100), NodeName: mine},
		Metrics: nodeagent.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard()}
	// checkNode runs the check as the agent and returns its Node as the admin reads it.
	checkNode := func(what string) *corev1.Node {
		t.Helper()
		if _, err := check.CheckOnce(ctx); err != nil {
			t.Fatalf("%s: runtime check: %v", what, err)
		}
		n := &corev1.Node{}
		if err := admin.Get(ctx, client.ObjectKey{Name: mine}, n); err != nil {
			t.Fatal(err)
		}
		if n.Labels["hyperpool.io/test"] != "runtime" || n.Labels["example.com/pool"] != pool {
			t.Errorf("%s: the node's other labels changed: %v", what, n.Labels)
		}
		return n
	}
	report := func(n *corev1.Node) runtimereport.Report {
		t.Helper()
		r, ok, err := runtimereport.Parse(n.Annotations[runtimereport.Annotation])
		if err != nil || !ok {
			t.Fatalf("runtime annotation %q: %t, %v", n.Annotations[runtimereport.Annotation], ok, err)
		}
		return r
	}

	n := checkNode("handler ready")
	if n.Labels[runtimereport.LabelKey(here)] != runtimereport.LabelValue {
		t.Errorf("ready handler %s: labels %v, want %s=%s", here, n.Labels, runtimereport.LabelKey(here), runtimereport.LabelValue)
	}
	if _, found := n.Labels[runtimereport.LabelKey(elsewhere)]; found {
		t.Errorf("handler %s of a class for other nodes labelled: %v", elsewhere, n.Labels)
	}
	r := report(n)
	if h, ok := r.Handler(here); !ok || !h.Ready() || r.ConfigVersion != 3 {
		t.Errorf("report %+v: want %s checked and ready, config version 3", r, here)
	}
	if _, ok := r.Handler(elsewhere); ok {
		t.Errorf("report %+v checks %s, whose class selects other nodes", r, elsewhere)
	}

	// The handler stops passing the sizing annotations: the label goes, the report says why.
	config.config = runtimeConfigTOML(here, false)
	n = checkNode("annotations dropped")
	if _, found := n.Labels[runtimereport.LabelKey(here)]; found {
		t.Errorf("handler %s dropping the annotations still labelled: %v", here, n.Labels)
	}
	if h, ok := report(n).Handler(here); !ok || h.Problem() != runtimereport.AnnotationsDropped {
		t.Errorf("report on %s = %+v, want AnnotationsDropped", here, h)
	}

	// What the policy refuses the same identity.
	patch := func(node, p string) error {
		return agent.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, client.RawPatch(types.MergePatchType, []byte(p)))
	}
	runtimeLabel := runtimereport.LabelKey("x")
	if err := patch(mine, fmt.Sprintf(`{"metadata":{"labels":{%q:"verified"}}}`, runtimeLabel)); err != nil {
		t.Errorf("the agent labelling its own node %s=verified: %v", runtimeLabel, err)
	}
	if err := patch(mine, fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, runtimeLabel)); err != nil {
		t.Errorf("the agent removing %s from its own node: %v", runtimeLabel, err)
	}
	wantRefused(t, "another label on its own node", patch(mine, `{"metadata":{"labels":{"node-role.kubernetes.io/x":""}}}`),
		"metadata.labels", "runtime.agents.hyperpool.io/<handler>=verified; no other label")
	wantRefused(t, "a runtime label with another value", patch(mine, fmt.Sprintf(`{"metadata":{"labels":{%q:"yes"}}}`, runtimeLabel)),
		"metadata.labels")
	wantRefused(t, "remove another label of its own node", patch(mine, `{"metadata":{"labels":{"example.com/pool":null}}}`),
		"metadata.labels")
	wantRefused(t, "a runtime label on another node", patch(other, fmt.Sprintf(`{"metadata":{"labels":{%q:"verified"}}}`, runtimeLabel)),
		"only its own Node", "that is "+mine+", not "+other)
	wantRefused(t, "the runtime annotation of another node", nodeagent.KubeNode{Reader: agent, Client: agent, NodeName: other}.
		SetAnnotation(ctx, runtimereport.Annotation, `{"handlers":[]}`), "only its own Node")
	if err := admin.Get(ctx, client.ObjectKey{Name: other}, n); err != nil {
		t.Fatal(err)
	}
	if _, found := n.Labels[runtimeLabel]; found || n.Annotations[runtimereport.Annotation] != "" {
		t.Errorf("another node after the attacks: labels %v, annotations %v", n.Labels, n.Annotations)
	}
}
