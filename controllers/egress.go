package controllers

import (
	"context"
	"fmt"

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

// Address ranges a sandbox with egress Internet may not reach: the cluster's own networks
// (RFC 1918 and carrier-grade NAT, where pod and service CIDRs live), link-local (cloud
// metadata at 169.254.169.254), and their IPv6 counterparts.
var nonInternetRanges = map[string][]string{
	"0.0.0.0/0": {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8"},
	"::/0":      {"fc00::/7", "fe80::/10", "::1/128"},
}

// egressPolicyName is the NetworkPolicy hyperpool keeps for a class.
func egressPolicyName(sb *agentsv1alpha1.AgentSandbox) string { return sb.Name + "-egress" }

// desiredEgressPolicy returns the NetworkPolicy a class's egress setting asks for, or nil for
// Unrestricted. It selects every pod of the class, warm and bound.
func desiredEgressPolicy(sb *agentsv1alpha1.AgentSandbox) *networkingv1.NetworkPolicy {
	egress := sb.Spec.Egress
	if egress == "" {
		egress = agentsv1alpha1.EgressInternet
	}
	if egress == agentsv1alpha1.EgressUnrestricted {
		return nil
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: sb.Namespace, Name: egressPolicyName(sb),
			Labels: map[string]string{agentsv1alpha1.SandboxLabel: sb.Name}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{agentsv1alpha1.SandboxLabel: sb.Name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{}, // None: no rule allows anything
		},
	}
	if egress == agentsv1alpha1.EgressInternet {
		var public []networkingv1.NetworkPolicyPeer
		for _, cidr := range []string{"0.0.0.0/0", "::/0"} {
			public = append(public, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: nonInternetRanges[cidr]}})
		}
		udp, tcp, dns := corev1.ProtocolUDP, corev1.ProtocolTCP, intstr.FromInt32(53)
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
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
	return np
}

// reconcileEgressPolicy makes the class's NetworkPolicy match spec.egress, writing only
// when it differs.
func (r *AgentSandboxReconciler) reconcileEgressPolicy(ctx context.Context, sb *agentsv1alpha1.AgentSandbox) error {
	want := desiredEgressPolicy(sb)
	have := &networkingv1.NetworkPolicy{}
	err := r.Get(ctx, client.ObjectKey{Namespace: sb.Namespace, Name: egressPolicyName(sb)}, have)
	switch {
	case apierrors.IsNotFound(err):
		have = nil
	case err != nil:
		return fmt.Errorf("getting NetworkPolicy %s: %w", egressPolicyName(sb), err)
	case !metav1.IsControlledBy(have, sb):
		return nil // not ours: leave it alone
	}

	switch {
	case want == nil && have == nil:
		return nil
	case want == nil:
		return client.IgnoreNotFound(r.Delete(ctx, have, client.Preconditions{UID: &have.UID}))
	case have == nil:
		if err := ctrl.SetControllerReference(sb, want, r.Scheme()); err != nil {
			return err
		}
		return client.IgnoreAlreadyExists(r.Create(ctx, want))
	case equality.Semantic.DeepEqual(have.Spec, want.Spec):
		return nil
	default:
		have.Spec = want.Spec
		return r.Update(ctx, have)
	}
}
