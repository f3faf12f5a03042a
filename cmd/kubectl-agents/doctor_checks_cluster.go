package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/version"
)

// minServerMinor is the oldest Kubernetes 1.x the admission policies need: 1.30 made
// ValidatingAdmissionPolicy GA.
const minServerMinor = 30

// leaseName is the manager's leader-election Lease (cmd/manager's LeaderElectionID).
const leaseName = "hyperpool-manager.agents.hyperpool.io"

// leaseSlack is how long past renewTime + leaseDurationSeconds a lease still counts as
// held: clocks differ, and a new leader takes a moment.
const leaseSlack = 10 * time.Second

// windowsBuildLabel is the label a Windows kubelet puts on its Node with its OS build.
const windowsBuildLabel = "node.kubernetes.io/windows-build"

func checkAPIServer(_ context.Context, d *doctorEnv) checkResult {
	const name = "API server"
	info, err := d.discovery.ServerVersion()
	if err != nil {
		return fail(name, fmt.Sprintf("cannot read the version: %v", err), "check the kubeconfig's server and credentials")
	}
	if v, err := utilversion.ParseGeneric(info.GitVersion); err == nil && v.Major() > 0 {
		if v.Major() == 1 && v.Minor() < minServerMinor {
			return fail(name, fmt.Sprintf("%s: hyperpool needs Kubernetes 1.%d or later (its admission policies are ValidatingAdmissionPolicies, GA in 1.30)", info.GitVersion, minServerMinor),
				"upgrade the cluster to Kubernetes 1.30 or later")
		}
		return pass(name, info.GitVersion)
	}
	// A build from source reports no release (v0.0.0-master+...): the API it serves says
	// enough.
	resources, err := d.discovery.ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1")
	if err == nil {
		for _, r := range resources.APIResources {
			if r.Name == "validatingadmissionpolicies" {
				return pass(name, fmt.Sprintf("%s is no release version, but it serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in 1.30)", info.GitVersion))
			}
		}
	}
	return fail(name, fmt.Sprintf("%s is no release version and does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy", info.GitVersion),
		"upgrade the cluster to Kubernetes 1.30 or later")
}

// hyperpoolCRDs are the CRDs the plugin and the manager need.
var hyperpoolCRDs = []string{"agentsandboxes", "agentsessions", "agentquotas"}

func checkCRDs(ctx context.Context, d *doctorEnv) checkResult {
	const name = "CRDs"
	var missing, versions []string
	labelled := map[string][]string{}
	for _, plural := range hyperpoolCRDs {
		crdName := plural + "." + agentsv1alpha1.GroupVersion.Group
		crd := &unstructured.Unstructured{}
		crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
		err := d.kube.Get(ctx, crclient.ObjectKey{Name: crdName}, crd)
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, crdName)
			continue
		case apierrors.IsForbidden(err):
			return forbiddenResult(name, "get", "customresourcedefinitions")
		case err != nil:
			return fail(name, fmt.Sprintf("reading %s: %v", crdName, err), "check the connection to the API server")
		}
		if !servesVersion(crd, agentsv1alpha1.GroupVersion.Version) {
			missing = append(missing, crdName+" (version "+agentsv1alpha1.GroupVersion.Version+" not served)")
		}
		v := crd.GetLabels()["app.kubernetes.io/version"]
		labelled[v] = append(labelled[v], crdName)
	}
	if len(missing) > 0 {
		return fail(name, "missing: "+strings.Join(missing, ", "),
			"install the CRDs: helm upgrade --install "+d.release()+" charts/hyperpool -n "+d.managerNamespace+
				" (or kubectl apply --server-side -f crds.yaml of the release)")
	}
	for v := range labelled {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	switch {
	case len(versions) == 1 && versions[0] == "":
		return pass(name, "installed; they carry no version label (the chart and config/crd install them unlabelled, only the release's crds.yaml labels them)")
	case version.Version == "dev":
		return pass(name, fmt.Sprintf("installed, version %s; this plugin is a dev build, so the versions are not compared", strings.Join(versions, ", ")))
	}
	var other []string
	for _, v := range versions {
		if v != version.Version && v != "" {
			other = append(other, fmt.Sprintf("%s (%s)", v, strings.Join(labelled[v], ", ")))
		}
	}
	if len(other) > 0 {
		return fail(name, fmt.Sprintf("the CRDs are of version %s, this plugin is %s", strings.Join(other, ", "), version.Version),
			"upgrade the CRDs to "+version.Version+" (kubectl apply --server-side -f crds.yaml of the release), or use the plugin of the cluster's version")
	}
	return pass(name, "installed, version "+version.Version+" as this plugin")
}

func servesVersion(crd *unstructured.Unstructured, want string) bool {
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if m["name"] == want && m["served"] == true {
			return true
		}
	}
	return false
}

// findManagerDeployment finds the manager's Deployment in ns: the chart's and
// config/default's carry app.kubernetes.io/component=manager and name hyperpool (or
// part-of hyperpool under a nameOverride).
func findManagerDeployment(ctx context.Context, kube crclient.Client, ns string) (*appsv1.Deployment, error) {
	list := &appsv1.DeploymentList{}
	if err := kube.List(ctx, list, crclient.InNamespace(ns), crclient.MatchingLabels{"app.kubernetes.io/component": "manager"}); err != nil {
		return nil, err
	}
	var found *appsv1.Deployment
	for i := range list.Items {
		dep := &list.Items[i]
		if dep.Labels["app.kubernetes.io/name"] != "hyperpool" && dep.Labels["app.kubernetes.io/part-of"] != "hyperpool" {
			continue
		}
		if found == nil || dep.Name == "hyperpool-manager" {
			found = dep
		}
	}
	if found == nil {
		return nil, apierrors.NewNotFound(appsv1.Resource("deployments"), "hyperpool manager")
	}
	return found, nil
}

func checkManager(ctx context.Context, d *doctorEnv) checkResult {
	const name = "manager"
	depErr := d.managerErr
	lease := &coordinationv1.Lease{}
	leaseErr := d.kube.Get(ctx, crclient.ObjectKey{Namespace: d.managerNamespace, Name: leaseName}, lease)
	if apierrors.IsForbidden(depErr) && apierrors.IsForbidden(leaseErr) {
		return forbiddenResult(name, "get", "deployments and leases in "+d.managerNamespace)
	}
	// What the Deployment says, for the detail.
	var depDetail string
	var depAvailable bool
	switch {
	case d.manager != nil:
		dep := d.manager
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		depAvailable = dep.Status.AvailableReplicas > 0
		if want == 0 {
			depDetail = fmt.Sprintf("Deployment %s scaled to 0 (the manager runs outside the cluster)", dep.Name)
		} else {
			depDetail = fmt.Sprintf("Deployment %s %d/%d available", dep.Name, dep.Status.AvailableReplicas, want)
		}
	case apierrors.IsForbidden(depErr):
		depDetail = "you may not read the Deployment"
	default:
		depDetail = "no manager Deployment in " + d.managerNamespace
	}
	now := time.Now()
	switch {
	case leaseErr == nil && leaseFresh(lease, now):
		holder := ""
		if lease.Spec.HolderIdentity != nil {
			holder = *lease.Spec.HolderIdentity
		}
		return pass(name, fmt.Sprintf("leader %s, lease renewed %s ago; %s", holder, now.Sub(lease.Spec.RenewTime.Time).Round(time.Second), depDetail))
	case apierrors.IsForbidden(leaseErr):
		if depAvailable {
			return pass(name, depDetail+"; you may not read its leader Lease")
		}
		return fail(name, depDetail+"; you may not read its leader Lease", "kubectl -n "+d.managerNamespace+" describe deployment -l app.kubernetes.io/component=manager")
	}
	leaseDetail := "no leader Lease " + leaseName
	if leaseErr == nil {
		leaseDetail = "the leader Lease " + leaseName + " expired"
		if lease.Spec.RenewTime != nil {
			leaseDetail += fmt.Sprintf(" (renewed %s ago)", now.Sub(lease.Spec.RenewTime.Time).Round(time.Second))
		}
	} else if !apierrors.IsNotFound(leaseErr) {
		leaseDetail = fmt.Sprintf("reading the leader Lease: %v", leaseErr)
	}
	detail := fmt.Sprintf("no manager leads: %s in %s; %s", leaseDetail, d.managerNamespace, depDetail)
	switch {
	case d.manager == nil && !apierrors.IsForbidden(depErr):
		return fail(name, detail, "install hyperpool: helm install hyperpool charts/hyperpool -n "+d.managerNamespace+
			" --create-namespace (or pass --manager-namespace where it is installed)")
	case d.manager != nil && !depAvailable:
		return fail(name, detail, fmt.Sprintf("kubectl -n %s describe deployment %s; with replicas 0, start the manager or kubectl -n %s scale deployment %s --replicas=2",
			d.managerNamespace, d.manager.Name, d.managerNamespace, d.manager.Name))
	}
	return fail(name, detail, "kubectl -n "+d.managerNamespace+" logs deployment/"+d.fullname()+"-manager: the manager runs but does not renew its lease")
}

// leaseFresh reports whether the lease has a holder and was renewed within its duration
// (and leaseSlack).
func leaseFresh(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" || l.Spec.RenewTime == nil {
		return false
	}
	duration := 15 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return now.Before(l.Spec.RenewTime.Add(duration + leaseSlack))
}

// chartPolicies are the suffixes of the chart's always-on admission policies
// (templates/admission-policies.yaml; config/policy has the same with fullname hyperpool).
var chartPolicies = []string{"agent-metadata", "egress", "sandbox-pods", "sandbox-template"}

func checkAdmissionPolicies(ctx context.Context, d *doctorEnv) checkResult {
	const name = "admission policies"
	full := d.fullname()
	want := make([]string, 0, len(chartPolicies)+1)
	for _, p := range chartPolicies {
		want = append(want, full+"-"+p)
	}
	// The node agent's policy comes with the node agent (node-agent.yaml).
	if err := d.kube.Get(ctx, crclient.ObjectKey{Namespace: d.managerNamespace, Name: full + "-node-agent"}, &appsv1.DaemonSet{}); err == nil {
		want = append(want, full+"-node-agent")
	}
	policies := &admissionregistrationv1.ValidatingAdmissionPolicyList{}
	if err := d.kube.List(ctx, policies); err != nil {
		if apierrors.IsForbidden(err) {
			return forbiddenResult(name, "list", "validatingadmissionpolicies")
		}
		return fail(name, fmt.Sprintf("listing ValidatingAdmissionPolicies: %v", err), "check that the cluster is Kubernetes 1.30 or later")
	}
	bindings := &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}
	if err := d.kube.List(ctx, bindings); err != nil {
		if apierrors.IsForbidden(err) {
			return forbiddenResult(name, "list", "validatingadmissionpolicybindings")
		}
		return fail(name, fmt.Sprintf("listing ValidatingAdmissionPolicyBindings: %v", err), "check that the cluster is Kubernetes 1.30 or later")
	}
	havePolicy, bound := map[string]bool{}, map[string]bool{}
	for _, p := range policies.Items {
		havePolicy[p.Name] = true
	}
	for _, b := range bindings.Items {
		if len(b.Spec.ValidationActions) > 0 {
			bound[b.Spec.PolicyName] = true
		}
	}
	var problems []string
	for _, p := range want {
		switch {
		case !havePolicy[p]:
			problems = append(problems, "ValidatingAdmissionPolicy "+p+" is missing")
		case !bound[p]:
			problems = append(problems, "ValidatingAdmissionPolicyBinding of "+p+" is missing: the policy is not in force")
		}
	}
	if len(problems) > 0 {
		return fail(name, strings.Join(problems, "; "),
			fmt.Sprintf("helm upgrade %s charts/hyperpool -n %s --reuse-values --set admissionPolicies.enabled=true (or kubectl apply --server-side -k config/default)",
				d.release(), d.managerNamespace))
	}
	return pass(name, fmt.Sprintf("%d policies present and bound: %s", len(want), strings.Join(want, ", ")))
}

// windowsNodes lists the Windows nodes, once per run: the node check and the node agents'
// check both read them, and on a large cluster the list is the run's largest read.
func windowsNodes(ctx context.Context, d *doctorEnv) ([]corev1.Node, error) {
	if d.nodes == nil {
		list := &corev1.NodeList{}
		err := d.kube.List(ctx, list, crclient.MatchingLabels{corev1.LabelOSStable: "windows"})
		d.nodes = &nodeList{items: list.Items, err: err}
	}
	return d.nodes.items, d.nodes.err
}

// nodeList is the Windows nodes as listed, or why they could not be.
type nodeList struct {
	items []corev1.Node
	err   error
}

func checkWindowsNodes(ctx context.Context, d *doctorEnv) checkResult {
	const name = "Windows nodes"
	nodes, err := windowsNodes(ctx, d)
	if apierrors.IsForbidden(err) {
		return forbiddenResult(name, "list", "nodes")
	} else if err != nil {
		return fail(name, fmt.Sprintf("listing nodes: %v", err), "check the connection to the API server")
	}
	if len(nodes) == 0 {
		return fail(name, "no node with kubernetes.io/os=windows", "add Windows Server nodes (2019, 2022 or 2025) with containerd and Hyper-V to the cluster")
	}
	type count struct{ all, ready int }
	byBuild := map[string]*count{}
	for _, n := range nodes {
		b := n.Labels[windowsBuildLabel]
		if b == "" {
			b = "unknown build"
		}
		if byBuild[b] == nil {
			byBuild[b] = &count{}
		}
		byBuild[b].all++
		if nodeReady(&n) {
			byBuild[b].ready++
		}
	}
	builds := make([]string, 0, len(byBuild))
	for b := range byBuild {
		builds = append(builds, b)
	}
	sort.Strings(builds)
	parts := make([]string, 0, len(builds))
	for _, b := range builds {
		parts = append(parts, fmt.Sprintf("%d × %s (%d Ready)", byBuild[b].all, b, byBuild[b].ready))
	}
	return pass(name, strings.Join(parts, ", "))
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// classRuntimeClass is the RuntimeClass a class's pods use, as the manager picks it
// (controllers/runtimeclass.go): spec.runtimeClassName; else for HyperV the per-build
// <generic>-<build> when it exists, else the generic one; for Process the process one.
func classRuntimeClass(ctx context.Context, d *doctorEnv, sb *agentsv1alpha1.AgentSandbox) (string, error) {
	if sb.Spec.RuntimeClassName != nil && *sb.Spec.RuntimeClassName != "" {
		return *sb.Spec.RuntimeClassName, nil
	}
	if sb.Spec.Isolation == agentsv1alpha1.IsolationProcess {
		return d.managerArg("process-runtime-class", "process"), nil
	}
	generic := d.managerArg("hyperv-runtime-class", "hyperv")
	perBuild := fmt.Sprintf("%s-%d", generic, sb.Spec.Windows.ImageBuild)
	err := d.kube.Get(ctx, crclient.ObjectKey{Name: perBuild}, &nodev1.RuntimeClass{})
	switch {
	case err == nil:
		return perBuild, nil
	case apierrors.IsNotFound(err):
		return generic, nil
	}
	return "", err
}

func checkRuntimeClasses(ctx context.Context, d *doctorEnv) checkResult {
	const name = "RuntimeClasses"
	users := map[string][]string{} // RuntimeClass -> the classes that use it
	for i := range d.classes {
		rc, err := classRuntimeClass(ctx, d, &d.classes[i])
		if apierrors.IsForbidden(err) {
			return forbiddenResult(name, "get", "runtimeclasses")
		} else if err != nil {
			return fail(name, fmt.Sprintf("reading RuntimeClasses: %v", err), "check the connection to the API server")
		}
		users[rc] = append(users[rc], d.classes[i].Name)
	}
	scope := "used by the classes of " + d.namespace
	if len(users) == 0 {
		// No class to go by: the manager's default for HyperV, the default isolation.
		users[d.managerArg("hyperv-runtime-class", "hyperv")] = nil
		scope = "the manager's default for HyperV (no class in " + d.namespace + ")"
	}
	names := make([]string, 0, len(users))
	for rc := range users {
		names = append(names, rc)
	}
	sort.Strings(names)
	d.handlers = map[string]bool{}
	var found, missing []string
	for _, rcName := range names {
		rc := &nodev1.RuntimeClass{}
		err := d.kube.Get(ctx, crclient.ObjectKey{Name: rcName}, rc)
		switch {
		case apierrors.IsForbidden(err):
			return forbiddenResult(name, "get", "runtimeclasses")
		case apierrors.IsNotFound(err):
			m := rcName
			if len(users[rcName]) > 0 {
				m += " (class " + listNames(users[rcName]) + ")"
			}
			missing = append(missing, m)
		case err != nil:
			return fail(name, fmt.Sprintf("reading RuntimeClass %s: %v", rcName, err), "check the connection to the API server")
		default:
			d.handlers[rc.Handler] = true
			found = append(found, fmt.Sprintf("%s → handler %s", rcName, rc.Handler))
		}
	}
	if len(missing) > 0 {
		return fail(name, "missing RuntimeClass "+strings.Join(missing, ", "),
			fmt.Sprintf("helm upgrade %s charts/hyperpool -n %s --reuse-values --set runtimeClasses.enabled=true, or create the RuntimeClass with the containerd handler of your Hyper-V runtime (runhcs-wcow-hypervisor), or correct the class's spec.runtimeClassName",
				d.release(), d.managerNamespace))
	}
	return pass(name, scope+": "+strings.Join(found, ", "))
}
