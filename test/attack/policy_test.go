//go:build !windows

package attack

// The shipped admission policies (config/policy, and the chart's node-agent policy) hold
// against the identities they are for: a tenant with session-user and edit, a platform
// admin, a node agent's token. Each attack is made as that identity, never as admin.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/nodeagent"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/framework"
)

// A tenant with session-user and edit cannot add, change or remove the labels and owner
// references that tie a pod to its class and session (config/policy/agent-metadata.yaml).
func TestPolicyTenantCannotForgePodLabelsOrOwners(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	s, bound, warm := sandboxPodsOf(t, c, ns)

	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		patch string
		want  []string
	}{
		{"remove the session label", bound, `{"metadata":{"labels":{"agents.hyperpool.io/session":null}}}`,
			[]string{"metadata.labels[agents.hyperpool.io/session]", "only the hyperpool manager"}},
		{"change the session label", bound, `{"metadata":{"labels":{"agents.hyperpool.io/session":"other"}}}`,
			[]string{"metadata.labels[agents.hyperpool.io/session]", "only the hyperpool manager"}},
		{"add a session label to a warm pod", warm, `{"metadata":{"labels":{"agents.hyperpool.io/session":"s1"}}}`,
			[]string{"metadata.labels[agents.hyperpool.io/session]", "only the hyperpool manager"}},
		{"remove the sandbox label", warm, `{"metadata":{"labels":{"agents.hyperpool.io/sandbox":null}}}`,
			[]string{"metadata.labels[agents.hyperpool.io/sandbox]", "only the hyperpool manager"}},
		{"change the sandbox label", bound, `{"metadata":{"labels":{"agents.hyperpool.io/sandbox":"other"}}}`,
			[]string{"metadata.labels[agents.hyperpool.io/sandbox]", "only the hyperpool manager"}},
		{"add another agents.hyperpool.io label", warm, `{"metadata":{"labels":{"agents.hyperpool.io/template-hash":"x"}}}`,
			[]string{"agents.hyperpool.io/template-hash", "only the hyperpool manager"}},
		{"remove the session's ownerReference", bound, `{"metadata":{"ownerReferences":null}}`,
			[]string{"metadata.ownerReferences", "only the hyperpool manager"}},
		{"remove the class's ownerReference", warm, `{"metadata":{"ownerReferences":null}}`,
			[]string{"metadata.ownerReferences", "only the hyperpool manager"}},
		{"rewrite the ownerReference to another session", bound, ownerPatch(s.Name+"-forged", "00000000-0000-0000-0000-000000000001"),
			[]string{"metadata.ownerReferences", "only the hyperpool manager"}},
		{"add a session's ownerReference to a warm pod", warm, ownerPatch(s.Name, string(s.UID)),
			[]string{"metadata.ownerReferences", "only the hyperpool manager"}},
	} {
		err := c.Patch(ctx, tc.pod.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(tc.patch)))
		wantRefused(t, tc.name, err, tc.want...)
	}
	if got := getPod(t, ns, bound.Name); got.Labels[agentsv1alpha1.SessionLabel] != "s1" || !metav1.IsControlledBy(got, s) {
		t.Errorf("bound pod after the attacks: labels %v, owners %+v", got.Labels, got.OwnerReferences)
	}

	// New pods that claim to belong to the class or a session.
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		owner  *metav1.OwnerReference
		want   string
	}{
		{"create a pod with the sandbox label", map[string]string{agentsv1alpha1.ClassLabel: "pool"}, nil, "metadata.labels[agents.hyperpool.io/sandbox]"},
		{"create a pod with the session label", map[string]string{agentsv1alpha1.SessionLabel: "s1"}, nil, "metadata.labels[agents.hyperpool.io/session]"},
		// Without blockOwnerDeletion, which OwnerReferencesPermissionEnforcement would refuse first.
		{"create a pod owned by the class", nil, &metav1.OwnerReference{APIVersion: agentsv1alpha1.GroupVersion.String(), Kind: "AgentSandbox",
			Name: sb.Name, UID: sb.UID, Controller: ptr.To(true)}, "metadata.ownerReferences"},
		{"create a pod owned by the session", nil, &metav1.OwnerReference{APIVersion: agentsv1alpha1.GroupVersion.String(), Kind: "AgentSession", Name: s.Name, UID: s.UID}, "metadata.ownerReferences"},
	} {
		pod := plainPod(ns, "forged", tc.labels)
		if tc.owner != nil {
			pod.OwnerReferences = []metav1.OwnerReference{*tc.owner}
		}
		wantRefused(t, tc.name, c.Create(ctx, pod), tc.want, "only the hyperpool manager")
	}

	// Through the status subresource too (it may change labels): an identity that may write
	// pod status, as kubelets and controllers do, still cannot touch hyperpool labels.
	statusWriter := "status-writer-" + ns
	if err := admin.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pod-status"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "pods/status"}, Verbs: []string{"get", "patch"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pod-status"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-status"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: statusWriter}}}); err != nil {
		t.Fatal(err)
	}
	sw := impersonate(t, rest.ImpersonationConfig{UserName: statusWriter, Groups: []string{"system:authenticated"}}, func(ctx context.Context, c client.Client) error {
		return c.Get(ctx, client.ObjectKeyFromObject(bound), &corev1.Pod{})
	})
	wantRefused(t, "remove the session label through pods/status", sw.Status().Patch(ctx, bound.DeepCopy(),
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"agents.hyperpool.io/session":null}}}`))),
		"metadata.labels[agents.hyperpool.io/session]", "only the hyperpool manager")
	if err := sw.Status().Patch(ctx, bound.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"example.com/status":"seen"}}}`))); err != nil {
		t.Errorf("a status write that leaves hyperpool labels alone: %v", err)
	}

	// The policy is that narrow: the tenant's own labels and pods are its business.
	if err := c.Patch(ctx, bound.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"blue"}}}`))); err != nil {
		t.Errorf("tenant adding its own label to a sandbox pod: %v", err)
	}
	if err := c.Create(ctx, plainPod(ns, "own", map[string]string{"app": "web"})); err != nil {
		t.Errorf("tenant creating its own pod: %v", err)
	}
}

// A tenant cannot change or delete the NetworkPolicy that enforces its class's egress, nor
// widen a sandbox's egress with a NetworkPolicy of its own (config/policy/egress.yaml).
func TestPolicyTenantCannotTouchClassNetworkPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	np := &networkingv1.NetworkPolicy{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool-egress"}, np)
		return err == nil && metav1.GetControllerOf(np) != nil, fmt.Sprintf("NetworkPolicy pool-egress: %v", err)
	})
	want := np.DeepCopy()

	edited := np.DeepCopy()
	edited.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}} // allow all
	wantRefused(t, "tenant opens the class's policy to everything", c.Update(ctx, edited),
		"NetworkPolicy pool-egress is controlled by AgentSandbox pool", "only the hyperpool manager may change it", "spec.egress")
	wantRefused(t, "tenant retargets the class's policy", c.Patch(ctx, np.DeepCopy(), client.RawPatch(types.MergePatchType,
		[]byte(`{"spec":{"podSelector":{"matchLabels":{"agents.hyperpool.io/sandbox":"none"}}}}`))),
		"controlled by AgentSandbox pool", "only the hyperpool manager may change it")
	wantRefused(t, "tenant labels the class's policy", c.Patch(ctx, np.DeepCopy(), client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"team":"blue"}}}`))), "controlled by AgentSandbox pool")
	wantRefused(t, "tenant deletes the class's policy", c.Delete(ctx, np.DeepCopy()),
		"controlled by AgentSandbox pool", "only the hyperpool manager may delete it", "spec.egress")
	wantRefused(t, "tenant deletes every policy of the namespace", c.DeleteAllOf(ctx, &networkingv1.NetworkPolicy{}, client.InNamespace(ns)),
		"controlled by AgentSandbox pool")

	got := &networkingv1.NetworkPolicy{}
	if err := admin.Get(ctx, client.ObjectKeyFromObject(np), got); err != nil {
		t.Fatalf("the class's policy after the attacks: %v", err)
	}
	if got.UID != want.UID || got.ResourceVersion != want.ResourceVersion {
		t.Errorf("the class's policy was replaced or written: uid %s→%s, resourceVersion %s→%s", want.UID, got.UID, want.ResourceVersion, got.ResourceVersion)
	}
}

// A tenant policy with egress or ingress rules must leave sandboxes out: policies add up, so
// its rules would widen what the class's spec.egress and spec.ingress allow.
func TestPolicyTenantEgressNetworkPolicyMustLeaveSandboxesOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	allowAll := func(name string, sel metav1.LabelSelector) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: sel,
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{}}},
		}
	}
	leaveOut := metav1.LabelSelectorRequirement{Key: agentsv1alpha1.ClassLabel, Operator: metav1.LabelSelectorOpDoesNotExist}

	wantRefused(t, "allow-all egress for every pod", c.Create(ctx, allowAll("allow-all", metav1.LabelSelector{})),
		"spec.egress", "widen a sandbox's egress", "{key: agents.hyperpool.io/sandbox, operator: DoesNotExist}", "spec.podSelector.matchExpressions")
	wantRefused(t, "allow-all egress for the class's pods", c.Create(ctx, allowAll("allow-pool",
		metav1.LabelSelector{MatchLabels: map[string]string{agentsv1alpha1.ClassLabel: "pool"}})), "spec.egress", "DoesNotExist")
	wantRefused(t, "allow-all egress for pods with a label a class template may carry", c.Create(ctx, allowAll("allow-web",
		metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}})), "spec.egress", "DoesNotExist")
	implicit := allowAll("allow-implicit", metav1.LabelSelector{})
	implicit.Spec.PolicyTypes = nil // defaulted to [Ingress, Egress] because of the egress rules
	wantRefused(t, "allow-all egress with policyTypes left to the default", c.Create(ctx, implicit), "spec.egress", "DoesNotExist")
	wantRefused(t, "a policy claiming to be the class's", c.Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool-egress", Labels: map[string]string{agentsv1alpha1.ClassLabel: "pool"}},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	}), "metadata.labels[agents.hyperpool.io/sandbox]", "only the hyperpool manager")

	// The way out the message names: the tenant's own pods, sandboxes left out.
	ok := allowAll("allow-all-but-sandboxes", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{leaveOut}})
	if err := c.Create(ctx, ok); err != nil {
		t.Fatalf("allow-all egress that leaves sandboxes out: %v", err)
	}
	widened := ok.DeepCopy()
	widened.Spec.PodSelector = metav1.LabelSelector{}
	wantRefused(t, "update the accepted policy to select sandboxes too", c.Update(ctx, widened), "spec.egress", "DoesNotExist")
	// Ingress is the class's too (spec.ingress): an allow-all ingress policy over sandboxes
	// would let other namespaces in, with policyTypes written or left to the default.
	allowIngress := func(name string, types []networkingv1.PolicyType, sel metav1.LabelSelector) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}}
	}
	wantRefused(t, "allow-all ingress for every pod", c.Create(ctx, allowIngress("allow-ingress",
		[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, metav1.LabelSelector{})),
		"spec.ingress", "widen a sandbox's ingress", "DoesNotExist")
	wantRefused(t, "allow-all ingress with policyTypes left to the default", c.Create(ctx, allowIngress("allow-ingress-implicit",
		nil, metav1.LabelSelector{MatchLabels: map[string]string{agentsv1alpha1.ClassLabel: "pool"}})), "spec.ingress", "DoesNotExist")
	// Policies that only narrow, or leave sandboxes out, are the tenant's own business.
	for _, np := range []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny-egress"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny-ingress"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		allowIngress("allow-ingress-but-sandboxes", nil, metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{leaveOut}}),
	} {
		if err := c.Create(ctx, np); err != nil {
			t.Errorf("%s: %v", np.Name, err)
		}
	}
	if err := c.Delete(ctx, ok); err != nil {
		t.Errorf("tenant deleting its own policy: %v", err)
	}
}

// A node agent's token may patch only its own Node (the token's node-name claim), and only
// the summary annotation there (the chart's node-agent policy and RBAC, as rendered).
func TestPolicyNodeAgentPatchesOnlyItsOwnNodeSummary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	installNodeAgentPolicy(t)
	// Nodes of this test's own, which no kubelet, kwok or scheduler uses.
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000)
	mine, other := "policy-agent-"+suffix+"-0", "policy-agent-"+suffix+"-1"
	for _, name := range []string{mine, other} {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"hyperpool.io/test": "policy"},
				Annotations: map[string]string{"example.com/other": "kept"}},
			Spec: corev1.NodeSpec{Unschedulable: true},
		}
		mustCreate(t, admin, node)
		t.Cleanup(func() { _ = admin.Delete(context.Background(), node) })
	}

	agentOn := func(node string) client.Client {
		return impersonate(t, nodeAgentIdentity(nodeAgentUser, node), func(ctx context.Context, c client.Client) error {
			_, err := nodeagent.CheckNode(ctx, c, mine) // the agent's start-up read, with the chart's RBAC
			return err
		})
	}
	agent := agentOn(mine)
	kube := func(node string) nodeagent.KubeNode {
		return nodeagent.KubeNode{Reader: agent, Client: agent, NodeName: node}
	}

	// What the node agent does, through its own code: accepted on its node.
	if err := kube(mine).SetSummaryAnnotation(ctx, `{"vms":1}`); err != nil {
		t.Fatalf("node agent writing its own node's summary: %v", err)
	}
	if v, err := kube(mine).SummaryAnnotation(ctx); err != nil || v != `{"vms":1}` {
		t.Errorf("summary read back = %q, %v", v, err)
	}
	wantRefused(t, "summary of another node", kube(other).SetSummaryAnnotation(ctx, `{"vms":0}`),
		"only its own Node", "node-name", "that is "+mine+", not "+other)

	patch := func(c client.Client, node, p string) error {
		return c.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, client.RawPatch(types.MergePatchType, []byte(p)))
	}
	wantRefused(t, "a label of its own node", patch(agent, mine, `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`),
		"metadata.labels", "only its Node's agents.hyperpool.io/uvm-summary annotation")
	wantRefused(t, "remove a label of its own node", patch(agent, mine, `{"metadata":{"labels":{"hyperpool.io/test":null}}}`), "metadata.labels")
	wantRefused(t, "another annotation of its own node", patch(agent, mine, `{"metadata":{"annotations":{"example.com/other":"changed"}}}`),
		"metadata.annotations", "only its Node's agents.hyperpool.io/uvm-summary annotation")
	wantRefused(t, "uncordon its own node", patch(agent, mine, `{"spec":{"unschedulable":false}}`), "spec", "uvm-summary")
	wantRefused(t, "taint its own node", patch(agent, mine, `{"spec":{"taints":[{"key":"x","effect":"NoSchedule"}]}}`), "spec")
	wantRefused(t, "a finalizer on its own node", patch(agent, mine, `{"metadata":{"finalizers":["example.com/hold"]}}`), "metadata.finalizers")
	wantRefused(t, "a label of another node", patch(agent, other, `{"metadata":{"labels":{"x":"y"}}}`), "only its own Node")
	wantRefused(t, "a token without the node-name claim", patch(agentOn(""), mine,
		`{"metadata":{"annotations":{"agents.hyperpool.io/uvm-summary":"{}"}}}`), "only its own Node", "no such claim")

	n := &corev1.Node{}
	if err := admin.Get(ctx, client.ObjectKey{Name: other}, n); err != nil {
		t.Fatal(err)
	}
	if _, found := n.Annotations[nodeagent.SummaryAnnotation]; found || n.Labels["x"] != "" {
		t.Errorf("another node after the attacks: labels %v, annotations %v", n.Labels, n.Annotations)
	}

	// Its Events, through the agent's own recorder, land in default, where its Role lets
	// it write them.
	if err := admin.Get(ctx, client.ObjectKey{Name: mine}, n); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: nodeAgentUser, Groups: []string{"system:authenticated"},
		Extra: map[string][]string{"authentication.kubernetes.io/node-name": {mine}}}
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: kubernetes.NewForConfigOrDie(cfg).EventsV1()})
	stop := make(chan struct{})
	defer close(stop)
	broadcaster.StartRecordingToSink(stop)
	defer broadcaster.Shutdown()
	node := nodeagent.KubeNode{Recorder: broadcaster.NewRecorder(env.Scheme, "hyperpool-node-agent"), NodeName: mine, NodeUID: n.UID}
	node.Event(corev1.EventTypeWarning, "PolicyTest", "Report", "from the policy test")
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		list := &eventsv1.EventList{}
		if err := admin.List(ctx, list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return false, err.Error()
		}
		for _, e := range list.Items {
			if e.Regarding.Name == mine && e.Reason == "PolicyTest" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no Event regarding node %s in default", mine)
	})
}

// The policies do not wedge deletion: an orphan delete makes the garbage collector strip
// the hyperpool ownerReference from the dependents, and the policy lets it.
func TestPolicyOrphanDeleteIsNotWedged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	mustCreate(t, c, builders.AgentSession(ns, "s1", "pool").Obj())
	s := waitSession(t, ns, "s1", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if pod := getPod(t, ns, s.Status.PodName); !metav1.IsControlledBy(pod, s) {
		t.Fatalf("bound pod is not controlled by its session: %+v", pod.OwnerReferences)
	}

	if err := c.Delete(ctx, s.DeepCopy(), client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatalf("tenant orphan-deleting its session: %v", err)
	}
	waitGone(t, admin, &agentsv1alpha1.AgentSession{}, client.ObjectKey{Namespace: ns, Name: "s1"})

	// The same for a class, deleted by its platform admin: the garbage collector strips the
	// class's ownerReference from its warm pods and from its NetworkPolicy.
	sb := &agentsv1alpha1.AgentSandbox{}
	bindRole(t, ns, "platform-admin-"+ns, "hyperpool-platform-admin")
	pa := impersonate(t, rest.ImpersonationConfig{UserName: "platform-admin-" + ns, Groups: []string{"system:authenticated"}},
		func(ctx context.Context, c client.Client) error {
			return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb)
		})
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		np := &networkingv1.NetworkPolicy{}
		err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool-egress"}, np)
		return err == nil && len(sandboxPods(t, ns, "pool")) > 0, fmt.Sprintf("class policy: %v; warm pods: %d", err, len(sandboxPods(t, ns, "pool")))
	})
	if err := pa.Delete(ctx, sb, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatalf("platform admin orphan-deleting the class: %v", err)
	}
	waitGone(t, admin, &agentsv1alpha1.AgentSandbox{}, client.ObjectKey{Namespace: ns, Name: "pool"})
}

// ---- Helpers of the policy tests. ----

// nodeAgentUser is the node agent's service account as the chart installs it (release
// hyperpool in the manager's namespace).
var nodeAgentUser = "system:serviceaccount:" + managerNamespace + ":hyperpool-node-agent"

var nodeAgentPolicy struct {
	once sync.Once
	err  error
}

// nodeAgentIdentity is a node agent's ServiceAccount token as bound to its pod on node (no
// node-name claim when node is ""), the identity the chart's node-agent policy confines.
func nodeAgentIdentity(user, node string) rest.ImpersonationConfig {
	who := rest.ImpersonationConfig{UserName: user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + managerNamespace, "system:authenticated"}}
	if node != "" {
		who.Extra = map[string][]string{"authentication.kubernetes.io/node-name": {node}}
	}
	return who
}

// installNodeAgentPolicy applies what the chart renders for the node agent (release
// hyperpool, nodeAgent.enabled) except its DaemonSet: its ServiceAccount, RBAC and admission
// policy. config/ does not ship the node agent, so the chart is the policy's source.
func installNodeAgentPolicy(t testing.TB) {
	t.Helper()
	nodeAgentPolicy.once.Do(func() {
		out, err := framework.RenderChart(env, "hyperpool", managerNamespace, "--set", "nodeAgent.enabled=true",
			"--show-only", "templates/node-agent.yaml")
		if err == nil {
			// Everything but the DaemonSet: the tests' agents run in-process.
			_, err = framework.CreateManifest(context.Background(), admin, out, "DaemonSet")
		}
		nodeAgentPolicy.err = err
	})
	if nodeAgentPolicy.err != nil {
		t.Fatalf("installing the chart's node-agent policy: %v", nodeAgentPolicy.err)
	}
	waitPolicyInForce(t, "hyperpool-node-agent")
}

// waitPolicyInForce waits until the API server enforces the node-agent policy (a new policy
// takes a moment): until the node agent's dry-run label patch of a node is refused by it.
func waitPolicyInForce(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	nodes := &corev1.NodeList{}
	if err := admin.List(ctx, nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("listing nodes: %v (%d)", err, len(nodes.Items))
	}
	agent := impersonate(t, rest.ImpersonationConfig{UserName: nodeAgentUser, Groups: []string{"system:authenticated"}}, nil)
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	eventually(t, inForceTimeout, func(ctx context.Context) (bool, string) {
		err := agent.Patch(ctx, nodes.Items[0].DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"probe":"x"}}}`)), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+name+"'") {
			return true, ""
		}
		_ = admin.Get(ctx, client.ObjectKey{Name: name}, vap)
		return false, fmt.Sprintf("policy %s not in force yet: probe %v; status %+v", name, err, vap.Status)
	})
}

// policyTenant returns a tenant of ns with session-user and edit, once config/policy is in
// force for it (the API server loads a new policy a moment after it is created, and the
// suite's first tests start right after TestMain created them): a dry-run pod with a
// sandbox label and a dry-run allow-all egress NetworkPolicy are both refused.
func policyTenant(t testing.TB, ns string) client.Client {
	t.Helper()
	c := tenant(t, ns, "hyperpool-session-user", "edit")
	eventually(t, inForceTimeout, func(ctx context.Context) (bool, string) {
		errPod := c.Create(ctx, plainPod(ns, "probe", map[string]string{agentsv1alpha1.ClassLabel: "probe"}), client.DryRunAll)
		errNP := c.Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{}}}}, client.DryRunAll)
		inForce := func(err error, policy string) bool {
			return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policy+"'")
		}
		return inForce(errPod, "hyperpool-agent-metadata") && inForce(errNP, "hyperpool-egress"),
			fmt.Sprintf("config/policy not in force yet: pod probe %v; NetworkPolicy probe %v", errPod, errNP)
	})
	return c
}

func getPod(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	return pod
}

// ownerPatch is a merge patch that sets a pod's ownerReferences to one AgentSession.
func ownerPatch(name, uid string) string {
	return fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":%q,"kind":"AgentSession","name":%q,"uid":%q,"controller":true}]}}`,
		agentsv1alpha1.GroupVersion.String(), name, uid)
}

// plainPod is a small Windows pod of the tenant's own.
func plainPod(ns, name string, labels map[string]string) *corev1.Pod {
	return builders.Pod(ns, name).Labels(labels).Windows().NoServiceAccountToken().Container("c", builders.DefaultImage).Obj()
}

// bindRole binds a ClusterRole to a user in ns.
func bindRole(t testing.TB, ns, user, role string) {
	t.Helper()
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := admin.Create(context.Background(), b); err != nil {
		t.Fatalf("binding %s to %s: %v", user, role, err)
	}
}

// waitGone waits until admin no longer finds the object.
func waitGone(t testing.TB, c client.Client, obj client.Object, key client.ObjectKey) {
	t.Helper()
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := c.Get(ctx, key, obj)
		return apierrors.IsNotFound(err), fmt.Sprintf("%T %s still there (finalizers %v, deletionTimestamp %v): %v",
			obj, key, obj.GetFinalizers(), obj.GetDeletionTimestamp(), err)
	})
}
