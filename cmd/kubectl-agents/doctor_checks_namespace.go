package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// uvmSummaryAnnotation is the node agent's footprint of a node's utility VMs
// (internal/nodeagent.SummaryAnnotation: "vms=12 memory=18Gi ... leaked=1536Mi ..."). The
// plugin reads the two fields it shows rather than import the node agent.
const uvmSummaryAnnotation = "agents.hyperpool.io/uvm-summary"

// uvmSummary is what doctor reads of a node's uvm-summary annotation.
type uvmSummary struct {
	vms    int
	leaked resource.Quantity
}

func parseUVMSummary(value string) (uvmSummary, bool) {
	var s uvmSummary
	ok := false
	for _, field := range strings.Fields(value) {
		key, val, _ := strings.Cut(field, "=")
		switch key {
		case "vms":
			if _, err := fmt.Sscan(val, &s.vms); err == nil {
				ok = true
			}
		case "leaked":
			if q, err := resource.ParseQuantity(val); err == nil {
				s.leaked = q
			}
		}
	}
	return s, ok
}

func checkNodeAgents(ctx context.Context, d *doctorEnv) checkResult {
	const name = "node agents"
	nodes, err := windowsNodes(ctx, d)
	if apierrors.IsForbidden(err) {
		return forbiddenResult(name, "list", "nodes")
	} else if err != nil {
		return fail(name, fmt.Sprintf("listing nodes: %v", err), "check the connection to the API server")
	}
	type key struct {
		handler string
		problem runtimereport.Problem
	}
	problemNodes := map[key][]string{}
	var unreadable, sizeProblems, leaks []string
	reporting := 0
	for _, n := range nodes {
		a := n.Annotations
		if a[runtimereport.Annotation] == "" && a[uvm.SizesAnnotation] == "" && a[uvmSummaryAnnotation] == "" {
			continue
		}
		reporting++
		report, ok, err := runtimereport.Parse(a[runtimereport.Annotation])
		switch {
		case err != nil:
			unreadable = append(unreadable, fmt.Sprintf("%s: %v", n.Name, err))
		case ok && report.Error != "":
			unreadable = append(unreadable, fmt.Sprintf("%s: %s", n.Name, report.Error))
		case ok:
			for _, h := range report.Handlers {
				// With classes to go by, only their handlers matter here.
				if len(d.handlers) > 0 && !d.handlers[h.Handler] {
					continue
				}
				if p := h.Problem(); p != runtimereport.NoProblem {
					k := key{h.Handler, p}
					problemNodes[k] = append(problemNodes[k], n.Name)
				}
			}
		}
		sizes, err := uvm.ParseSizeReports(a[uvm.SizesAnnotation])
		if err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s: %v", n.Name, err))
		}
		for _, s := range sizes {
			if s.Namespace != d.namespace || (d.sandbox != "" && s.Sandbox != d.sandbox) || s.Applied() {
				continue
			}
			sizeProblems = append(sizeProblems, fmt.Sprintf("%d VM(s) of class %s on %s got %d MiB of the %d MiB asked",
				s.VMs, s.Sandbox, n.Name, s.AssignedMiB, s.RequestedMiB))
		}
		if s, ok := parseUVMSummary(a[uvmSummaryAnnotation]); ok && !s.leaked.IsZero() {
			leaks = append(leaks, fmt.Sprintf("%s %s", n.Name, s.leaked.String()))
		}
	}
	if reporting == 0 {
		return notApplicable(name, "no node agent reports (simulated nodes, or the chart's nodeAgent.enabled is false)")
	}
	keys := make([]key, 0, len(problemNodes))
	for k := range problemNodes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].handler != keys[j].handler {
			return keys[i].handler < keys[j].handler
		}
		return keys[i].problem < keys[j].problem
	})
	var details, fixes []string
	for _, k := range keys {
		nodes := problemNodes[k]
		sort.Strings(nodes)
		details = append(details, fmt.Sprintf("handler %s: %s on node %s", k.handler, k.problem, listNames(nodes)))
		fixes = append(fixes, k.problem.Fix(k.handler))
	}
	details = append(details, unreadable...)
	if len(unreadable) > 0 {
		fixes = append(fixes, "read the node agent's log on those nodes (kubectl -n "+d.managerNamespace+" logs ds/"+d.fullname()+"-node-agent)")
	}
	details = append(details, sizeProblems...)
	if len(sizeProblems) > 0 && len(keys) == 0 {
		fixes = append(fixes, runtimereport.AnnotationsDropped.Fix("of the class's RuntimeClass"))
	}
	leakNote := ""
	if len(leaks) > 0 {
		leakNote = "; leaked VM memory on " + listNames(leaks) + " (the node agent reaps it with nodeAgent.reap=true)"
	}
	if len(details) > 0 {
		return fail(name, strings.Join(details, "; ")+leakNote, strings.Join(fixes, " "))
	}
	return pass(name, fmt.Sprintf("%d of %d Windows nodes report; their runtime handlers and VM sizes are as asked%s", reporting, len(nodes), leakNote))
}

func checkClasses(_ context.Context, d *doctorEnv) checkResult {
	const name = "sandbox classes"
	switch {
	case apierrors.IsForbidden(d.classesErr):
		return forbiddenResult(name, "list", "agentsandboxes in "+d.namespace)
	case d.classesErr != nil:
		return fail(name, fmt.Sprintf("listing classes: %v", d.classesErr), "check the connection to the API server and the CRDs")
	case d.sandbox != "" && len(d.classes) == 0:
		return fail(name, fmt.Sprintf("no AgentSandbox %s in namespace %s", d.sandbox, d.namespace),
			"kubectl get agentsandboxes -n "+d.namespace+" lists the classes; create one from config/samples")
	case len(d.classes) == 0:
		return notApplicable(name, "no AgentSandbox in namespace "+d.namespace)
	}
	var good, bad []string
	for _, sb := range d.classes {
		conds := sb.Status.Conditions
		var problems []string
		if c := meta.FindStatusCondition(conds, agentsv1alpha1.SandboxDegraded); c != nil && c.Status == metav1.ConditionTrue {
			problems = append(problems, fmt.Sprintf("Degraded (%s): %s", c.Reason, c.Message))
		}
		if c := meta.FindStatusCondition(conds, agentsv1alpha1.SandboxVMSizeApplied); c != nil && c.Status == metav1.ConditionFalse {
			problems = append(problems, fmt.Sprintf("VMSizeApplied False (%s): %s", c.Reason, c.Message))
		}
		if c := meta.FindStatusCondition(conds, agentsv1alpha1.SandboxRuntimeReady); c != nil && c.Status == metav1.ConditionFalse {
			problems = append(problems, fmt.Sprintf("RuntimeReady False (%s): %s", c.Reason, c.Message))
		}
		if len(problems) > 0 {
			bad = append(bad, sb.Name+": "+strings.Join(problems, "; "))
			continue
		}
		desired := int32(0)
		if sb.Spec.Replicas != nil {
			desired = *sb.Spec.Replicas
		}
		state := fmt.Sprintf("%s %d/%d warm", conditionWord(conds, agentsv1alpha1.SandboxReady, "Ready", "filling"), sb.Status.ReadyReplicas, desired)
		for _, t := range []string{agentsv1alpha1.SandboxVMSizeApplied, agentsv1alpha1.SandboxRuntimeReady} {
			if meta.IsStatusConditionTrue(conds, t) {
				state += ", " + t
			}
		}
		good = append(good, fmt.Sprintf("%s (%s)", sb.Name, state))
	}
	if len(bad) > 0 {
		return fail(name, strings.Join(bad, "; "),
			"each message says what to change; kubectl describe agentsandbox -n "+d.namespace+" shows the conditions and events")
	}
	return pass(name, strings.Join(good, ", "))
}

// conditionWord is yes when the condition is True, else no (with its reason).
func conditionWord(conds []metav1.Condition, t, yes, no string) string {
	c := meta.FindStatusCondition(conds, t)
	switch {
	case c == nil:
		return "no " + t + " condition yet"
	case c.Status == metav1.ConditionTrue:
		return yes
	}
	return no + " (" + c.Reason + ")"
}

func checkQuota(ctx context.Context, d *doctorEnv) checkResult {
	const name = "quota"
	quotas := &agentsv1alpha1.AgentQuotaList{}
	if err := d.kube.List(ctx, quotas, crclient.InNamespace(d.namespace)); err != nil {
		if apierrors.IsForbidden(err) {
			return forbiddenResult(name, "list", "agentquotas in "+d.namespace)
		}
		return fail(name, fmt.Sprintf("listing quotas: %v", err), "check the connection to the API server and the CRDs")
	}
	if len(quotas.Items) == 0 {
		return notApplicable(name, "no AgentQuota: the namespace is not limited")
	}
	var names, conflicts []string
	for _, q := range quotas.Items {
		names = append(names, q.Name)
		if c := meta.FindStatusCondition(q.Status.Conditions, agentsv1alpha1.QuotaActive); c != nil && c.Reason == agentsv1alpha1.ReasonConflict {
			conflicts = append(conflicts, fmt.Sprintf("%s: %s", q.Name, c.Message))
		}
	}
	if len(quotas.Items) > 1 || len(conflicts) > 0 {
		detail := fmt.Sprintf("%d AgentQuotas (%s): only the oldest is enforced", len(quotas.Items), strings.Join(names, ", "))
		if len(conflicts) > 0 {
			detail += "; " + strings.Join(conflicts, "; ")
		}
		return fail(name, detail, "keep one AgentQuota per namespace: merge the limits into one and delete the others")
	}
	q := quotas.Items[0]
	var used []string
	if q.Spec.Hard.Sessions != nil {
		used = append(used, fmt.Sprintf("sessions %d/%d", derefInt32(q.Status.Used.Sessions), *q.Spec.Hard.Sessions))
	}
	if q.Spec.Hard.WarmSandboxes != nil {
		used = append(used, fmt.Sprintf("warm sandboxes %d/%d", derefInt32(q.Status.Used.WarmSandboxes), *q.Spec.Hard.WarmSandboxes))
	}
	if q.Spec.Hard.Memory != nil {
		used = append(used, fmt.Sprintf("memory %s/%s", quantityOrZero(q.Status.Used.Memory), q.Spec.Hard.Memory.String()))
	}
	if q.Spec.Hard.CPU != nil {
		used = append(used, fmt.Sprintf("cpu %s/%s", quantityOrZero(q.Status.Used.CPU), q.Spec.Hard.CPU.String()))
	}
	queued := fmt.Sprintf("%d queued", q.Status.Queued)
	if q.Status.QueueHead != "" {
		queued += " (next: " + q.Status.QueueHead + ")"
	}
	active := conditionWord(q.Status.Conditions, agentsv1alpha1.QuotaActive, "enforced", "not enforced")
	return pass(name, fmt.Sprintf("%s %s: %s; %s", q.Name, active, strings.Join(append(used, queued), ", "), sessionsNote(ctx, d)))
}

// sessionsNote counts the namespace's sessions by whether they wait.
func sessionsNote(ctx context.Context, d *doctorEnv) string {
	sessions := &agentsv1alpha1.AgentSessionList{}
	if err := d.kube.List(ctx, sessions, crclient.InNamespace(d.namespace)); err != nil {
		return "sessions not readable"
	}
	queued := 0
	for _, s := range sessions.Items {
		if s.Status.Phase == agentsv1alpha1.SessionQueued {
			queued++
		}
	}
	return fmt.Sprintf("%d sessions, %d of them Queued", len(sessions.Items), queued)
}

func derefInt32(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func quantityOrZero(q *resource.Quantity) string {
	if q == nil {
		return "0"
	}
	return q.String()
}

// right is one thing the caller may need to do in the namespace.
type right struct {
	verb, group, resource, subresource string
}

func (r right) String() string {
	res := r.resource
	if r.subresource != "" {
		res += "/" + r.subresource
	}
	return r.verb + " " + res
}

// requiredRights are what kubectl agents and pkg/client need to open and use sessions:
// sessions (open watches them, end deletes them), the class (open checks it exists), and
// pods/exec (create and get: an exec over WebSocket is a GET) and pods (the sandbox's main
// container). The chart's <release>-agent-backend ClusterRole grants them all.
var requiredRights = []right{
	{"create", agentsv1alpha1.GroupVersion.Group, "agentsessions", ""},
	{"get", agentsv1alpha1.GroupVersion.Group, "agentsessions", ""},
	{"watch", agentsv1alpha1.GroupVersion.Group, "agentsessions", ""},
	{"delete", agentsv1alpha1.GroupVersion.Group, "agentsessions", ""},
	{"get", agentsv1alpha1.GroupVersion.Group, "agentsandboxes", ""},
	{"create", "", "pods", "exec"},
	{"get", "", "pods", "exec"},
	{"get", "", "pods", ""},
}

// secretsRight is needed only for sessions with spec.credentials: the client reads the
// Secrets with the caller's identity.
var secretsRight = right{"get", "", "secrets", ""}

func (d *doctorEnv) may(ctx context.Context, r right) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: d.namespace, Verb: r.verb,
			Group: r.group, Resource: r.resource, Subresource: r.subresource},
	}}
	if err := d.kube.Create(ctx, review); err != nil {
		return false, err
	}
	return review.Status.Allowed, nil
}

// whoAmI is the caller's user name, or "" when the API server does not say.
func (d *doctorEnv) whoAmI(ctx context.Context) string {
	review := &authenticationv1.SelfSubjectReview{}
	if err := d.kube.Create(ctx, review); err != nil {
		return ""
	}
	return review.Status.UserInfo.Username
}

func checkRights(ctx context.Context, d *doctorEnv) checkResult {
	const name = "your rights"
	var missing []string
	for _, r := range requiredRights {
		ok, err := d.may(ctx, r)
		if err != nil {
			return fail(name, fmt.Sprintf("asking the API server what you may do: %v", err), "check the connection to the API server")
		}
		if !ok {
			missing = append(missing, r.String())
		}
	}
	secrets, err := d.may(ctx, secretsRight)
	if err != nil {
		return fail(name, fmt.Sprintf("asking the API server what you may do: %v", err), "check the connection to the API server")
	}
	secretsNote := "get secrets too (for sessions with spec.credentials)"
	if !secrets {
		secretsNote = "not get secrets: sessions with spec.credentials would fail to deliver them"
	}
	who := d.whoAmI(ctx)
	if len(missing) > 0 {
		subject := "--user=" + who
		if who == "" {
			subject = "--user=<you>"
		} else if sa, ok := strings.CutPrefix(who, "system:serviceaccount:"); ok {
			subject = "--serviceaccount=" + sa
		}
		bindingName := "agent-backend"
		if who != "" {
			bindingName = strings.NewReplacer(":", "-", "@", "-").Replace(who) + "-agent-backend"
		}
		return fail(name, fmt.Sprintf("%s may not %s in %s", orYou(who), strings.Join(missing, ", "), d.namespace),
			fmt.Sprintf("a namespace admin binds the chart's ClusterRole %s-agent-backend: kubectl create rolebinding %s -n %s --clusterrole=%s-agent-backend %s",
				d.fullname(), bindingName, d.namespace, d.fullname(), subject))
	}
	return pass(name, fmt.Sprintf("%s may open, use and end sessions in %s (sessions, pods/exec, pods), and %s", orYou(who), d.namespace, secretsNote))
}

func orYou(who string) string {
	if who == "" {
		return "you"
	}
	return who
}

func checkNetworkPolicy(ctx context.Context, d *doctorEnv) checkResult {
	const name = "network policy"
	const unverifiable = "best effort: whether the Windows nodes' CNI enforces NetworkPolicy cannot be verified from the API"
	if len(d.classes) == 0 {
		return notApplicable(name, "no class to check in "+d.namespace+"; "+unverifiable)
	}
	policies := &networkingv1.NetworkPolicyList{}
	if err := d.kube.List(ctx, policies, crclient.InNamespace(d.namespace)); err != nil {
		if apierrors.IsForbidden(err) {
			return forbiddenResult(name, "list", "networkpolicies in "+d.namespace)
		}
		return notApplicable(name, fmt.Sprintf("listing NetworkPolicies: %v; %s", err, unverifiable))
	}
	have := map[string]bool{}
	for _, p := range policies.Items {
		have[p.Name] = true
	}
	var present, absent []string
	for _, sb := range d.classes {
		p := sb.Name + "-egress"
		if have[p] {
			present = append(present, p)
		} else {
			absent = append(absent, p)
		}
	}
	if len(absent) > 0 {
		return notApplicable(name, fmt.Sprintf("the manager has not written %s yet (it keeps one per class); %s", listNames(absent), unverifiable))
	}
	return pass(name, fmt.Sprintf("%s; the classes' policies exist (%s)", unverifiable, listNames(present)))
}
