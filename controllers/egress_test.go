package controllers

import (
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// The class's NetworkPolicy restricts ingress whatever spec.egress says: None lets nothing
// in, SameNamespace lets in the pods of the class's namespace only (a podSelector with no
// namespaceSelector), and unset is None. Egress Unrestricted keeps the policy, without Egress
// in its policyTypes.
func TestDesiredPolicyIngress(t *testing.T) {
	for _, tc := range []struct {
		name          string
		egress        agentsv1alpha1.EgressPolicy
		ingress       agentsv1alpha1.IngressPolicy
		wantTypes     []networkingv1.PolicyType
		sameNamespace bool
	}{
		{"unset ingress is None", agentsv1alpha1.EgressInternet, "", []networkingv1.PolicyType{"Ingress", "Egress"}, false},
		{"None", agentsv1alpha1.EgressNone, agentsv1alpha1.IngressNone, []networkingv1.PolicyType{"Ingress", "Egress"}, false},
		{"SameNamespace", agentsv1alpha1.EgressInternet, agentsv1alpha1.IngressSameNamespace, []networkingv1.PolicyType{"Ingress", "Egress"}, true},
		{"None with egress Unrestricted", agentsv1alpha1.EgressUnrestricted, agentsv1alpha1.IngressNone, []networkingv1.PolicyType{"Ingress"}, false},
		{"SameNamespace with egress Unrestricted", agentsv1alpha1.EgressUnrestricted, agentsv1alpha1.IngressSameNamespace, []networkingv1.PolicyType{"Ingress"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := builders.AgentSandbox("ns", "pool").Egress(tc.egress).Obj()
			sb.Spec.Ingress = tc.ingress
			np := desiredEgressPolicy(sb, DefaultInternetEgressExcept)
			if np == nil {
				t.Fatal("no policy: ingress would be open to the whole cluster")
			}
			if !slices.Equal(np.Spec.PolicyTypes, tc.wantTypes) {
				t.Errorf("policyTypes %v, want %v", np.Spec.PolicyTypes, tc.wantTypes)
			}
			if np.Spec.PodSelector.MatchLabels[agentsv1alpha1.ClassLabel] != "pool" {
				t.Errorf("podSelector %v, want the class's pods", np.Spec.PodSelector)
			}
			if !tc.sameNamespace {
				if len(np.Spec.Ingress) != 0 {
					t.Errorf("ingress rules %+v, want none (nothing in)", np.Spec.Ingress)
				}
				return
			}
			if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 || len(np.Spec.Ingress[0].Ports) != 0 {
				t.Fatalf("ingress rules %+v, want one rule with one peer, all ports", np.Spec.Ingress)
			}
			peer := np.Spec.Ingress[0].From[0]
			if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil ||
				len(peer.PodSelector.MatchLabels) != 0 || len(peer.PodSelector.MatchExpressions) != 0 {
				t.Errorf("ingress peer %+v, want every pod of the policy's own namespace and nothing else", peer)
			}
		})
	}
}
