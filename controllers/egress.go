package controllers

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;delete

// DefaultInternetEgressExcept are the address ranges a sandbox with egress Internet may not
// reach (--internet-egress-except replaces them): the cluster's own networks (RFC 1918 and
// carrier-grade NAT, where pod and service CIDRs live, and Alibaba Cloud's metadata at
// 100.100.100.200), link-local (the metadata service of AWS, Azure, GCP and Oracle at
// 169.254.169.254), loopback, Azure's platform address 168.63.129.16 (WireServer: DHCP, DNS
// and the VM agent's channel), and the IPv6 counterparts (AWS's fd00:ec2::254 is in fc00::/7).
var DefaultInternetEgressExcept = []string{
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8",
	"168.63.129.16/32",
	"fc00::/7", "fe80::/10", "::1/128",
}

// ParseCIDRs parses a comma-separated list of CIDRs, as --internet-egress-except takes it.
func ParseCIDRs(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR, e.g. 10.0.0.0/8 or fc00::/7: %w", f, err)
		}
		out = append(out, prefix.Masked().String())
	}
	return out, nil
}

// exceptByFamily sorts the excluded ranges under the IPv4 and IPv6 "everything" blocks they
// belong to.
func exceptByFamily(except []string) map[string][]string {
	out := map[string][]string{"0.0.0.0/0": nil, "::/0": nil}
	for _, cidr := range except {
		if strings.Contains(cidr, ":") {
			out["::/0"] = append(out["::/0"], cidr)
		} else {
			out["0.0.0.0/0"] = append(out["0.0.0.0/0"], cidr)
		}
	}
	return out
}

// egressPolicyName is the NetworkPolicy hyperpool keeps for a class. It carries spec.ingress
// too; the name stays, so that the policy of a class made before ingress is updated in place.
func egressPolicyName(sb *agentsv1alpha1.AgentSandbox) string { return sb.Name + "-egress" }

func egressOf(sb *agentsv1alpha1.AgentSandbox) agentsv1alpha1.EgressPolicy {
	if sb.Spec.Egress == "" {
		return agentsv1alpha1.EgressInternet
	}
	return sb.Spec.Egress
}

func ingressOf(sb *agentsv1alpha1.AgentSandbox) agentsv1alpha1.IngressPolicy {
	if sb.Spec.Ingress == "" {
		return agentsv1alpha1.IngressNone
	}
	return sb.Spec.Ingress
}

// desiredEgressPolicy returns the NetworkPolicy a class's egress and ingress settings ask
// for. It selects every pod of the class, warm and bound. Ingress is always restricted, so
// there is always a policy; egress Unrestricted leaves Egress out of its policyTypes. except
// are the ranges egress Internet leaves out.
func desiredEgressPolicy(sb *agentsv1alpha1.AgentSandbox, except []string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: sb.Namespace, Name: egressPolicyName(sb),
			Labels: map[string]string{agentsv1alpha1.ClassLabel: sb.Name}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{agentsv1alpha1.ClassLabel: sb.Name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     desiredIngressRules(ingressOf(sb)),
		},
	}
	switch egressOf(sb) {
	case agentsv1alpha1.EgressUnrestricted:
		return np
	case agentsv1alpha1.EgressInternet:
		np.Spec.Egress = internetEgressRules(except)
	default: // None: no rule allows anything
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
	}
	np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	return np
}

// desiredIngressRules: None allows nothing in; SameNamespace allows the pods of the class's
// namespace (a podSelector without a namespaceSelector means the policy's own namespace).
// hyperpool's own access (exec and file transfer) goes through the API server and the
// kubelet, and a NetworkPolicy never blocks the pod's node (probes), so neither needs a rule.
func desiredIngressRules(ingress agentsv1alpha1.IngressPolicy) []networkingv1.NetworkPolicyIngressRule {
	if ingress == agentsv1alpha1.IngressSameNamespace {
		return []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}
	}
	return []networkingv1.NetworkPolicyIngressRule{}
}

// internetEgressRules allow public addresses (all but except) and the cluster DNS.
func internetEgressRules(except []string) []networkingv1.NetworkPolicyEgressRule {
	var public []networkingv1.NetworkPolicyPeer
	byFamily := exceptByFamily(except)
	for _, cidr := range []string{"0.0.0.0/0", "::/0"} {
		public = append(public, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: byFamily[cidr]}})
	}
	udp, tcp, dns := corev1.ProtocolUDP, corev1.ProtocolTCP, intstr.FromInt32(53)
	return []networkingv1.NetworkPolicyEgressRule{
		{To: public},
		// Names must still resolve: the cluster DNS, and nothing else inside the cluster.
		{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
		},
	}
}

// reconcileEgressPolicy makes the class's NetworkPolicy match spec.egress and spec.ingress,
// writing only when it differs. It returns a blocker while the policy the class needs is not
// in place: the policy fails closed, so no pod of the class is created (and no session
// binds) without it.
//
// A policy of that name that someone else made is taken over, and one that was edited is
// restored: NetworkPolicies are additive, so the class's own must say exactly what the
// class says. Only a policy controlled by another controller is left alone, and blocks.
func (r *AgentSandboxReconciler) reconcileEgressPolicy(ctx context.Context, sb *agentsv1alpha1.AgentSandbox) (*blocker, error) {
	name := egressPolicyName(sb)
	want := desiredEgressPolicy(sb, r.config.InternetEgressExcept)
	have := &networkingv1.NetworkPolicy{}
	err := r.Get(ctx, client.ObjectKey{Namespace: sb.Namespace, Name: name}, have)
	switch {
	case apierrors.IsNotFound(err):
		have = nil
	case err != nil:
		return nil, fmt.Errorf("getting NetworkPolicy %s: %w", name, err)
	}
	if have != nil {
		if owner := metav1.GetControllerOf(have); owner != nil && owner.UID != sb.UID {
			return egressBlocker(sb, fmt.Sprintf("NetworkPolicy %s is controlled by %s %s, not by this class; delete it or rename the class", name, owner.Kind, owner.Name)), nil
		}
	}

	var writeErr error
	switch {
	case have == nil:
		if err := ctrl.SetControllerReference(sb, want, r.Scheme()); err != nil {
			return nil, err
		}
		writeErr = r.Create(ctx, want)
	case metav1.IsControlledBy(have, sb) && equality.Semantic.DeepEqual(have.Spec, want.Spec) &&
		have.Labels[agentsv1alpha1.ClassLabel] == sb.Name:
		return nil, nil
	default:
		have.Spec = want.Spec
		if have.Labels == nil {
			have.Labels = map[string]string{}
		}
		have.Labels[agentsv1alpha1.ClassLabel] = sb.Name
		if err := ctrl.SetControllerReference(sb, have, r.Scheme()); err != nil {
			return nil, err
		}
		writeErr = r.Update(ctx, have)
	}
	if writeErr != nil {
		return egressBlocker(sb, fmt.Sprintf("writing NetworkPolicy %s failed: %v", name, writeErr)), writeErr
	}
	return nil, nil
}

func egressBlocker(sb *agentsv1alpha1.AgentSandbox, why string) *blocker {
	return &blocker{Reason: agentsv1alpha1.ReasonEgressPolicyNotReady, Message: fmt.Sprintf(
		"spec.egress %s and spec.ingress %s need NetworkPolicy %s, and %s; no sandbox of this class is started or bound until it is in place",
		egressOf(sb), ingressOf(sb), egressPolicyName(sb), why)}
}

// egressInPlace says, from the cache, whether the class's policy is as its spec.egress and
// spec.ingress ask: a session binds only then. nil: in place.
func egressInPlace(ctx context.Context, c client.Reader, sb *agentsv1alpha1.AgentSandbox, except []string) (*blocker, error) {
	want := desiredEgressPolicy(sb, except)
	have := &networkingv1.NetworkPolicy{}
	err := c.Get(ctx, client.ObjectKey{Namespace: sb.Namespace, Name: want.Name}, have)
	switch {
	case apierrors.IsNotFound(err):
		return egressBlocker(sb, "it does not exist yet"), nil
	case err != nil:
		return nil, fmt.Errorf("getting NetworkPolicy %s: %w", want.Name, err)
	case !metav1.IsControlledBy(have, sb) || !equality.Semantic.DeepEqual(have.Spec, want.Spec):
		return egressBlocker(sb, "it differs from what the class asks for (the pool's controller restores it)"), nil
	}
	return nil, nil
}
