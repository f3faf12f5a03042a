//go:build !windows

package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// The class's NetworkPolicy carries spec.ingress: by default (None) nothing may connect to a
// sandbox over the pod network; SameNamespace lets in the pods of the class's namespace and
// no other. It follows every change of the field, also with egress Unrestricted (no egress
// rules, but the policy stays for ingress), and an edit that widens it is undone.
func TestIngressPolicyFollowsTheClass(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(0).Obj()) // spec.ingress unset: None
	key := client.ObjectKey{Namespace: ns, Name: "pool-egress"}
	np := &networkingv1.NetworkPolicy{}
	waitPolicy := func(what string, ok func() bool) {
		t.Helper()
		eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
			got := &networkingv1.NetworkPolicy{}
			if err := k8s.Get(ctx, key, got); err != nil {
				return false, fmt.Sprintf("NetworkPolicy %s: want %s; get: %v (last seen %+v)", key.Name, what, err, np.Spec)
			}
			np = got
			return ok(), fmt.Sprintf("NetworkPolicy %s: want %s; got %+v", key.Name, what, np.Spec)
		})
	}
	hasType := func(pt networkingv1.PolicyType) bool { return slices.Contains(np.Spec.PolicyTypes, pt) }
	nothingIn := func() bool { return hasType(networkingv1.PolicyTypeIngress) && len(np.Spec.Ingress) == 0 }
	sameNamespaceOnly := func() bool {
		if !hasType(networkingv1.PolicyTypeIngress) || len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 {
			return false
		}
		peer := np.Spec.Ingress[0].From[0]
		return peer.NamespaceSelector == nil && peer.IPBlock == nil && peer.PodSelector != nil &&
			len(peer.PodSelector.MatchLabels) == 0 && len(peer.PodSelector.MatchExpressions) == 0
	}
	patchClass := func(patch string) {
		t.Helper()
		p := client.RawPatch("application/merge-patch+json", []byte(patch))
		if err := k8s.Patch(context.Background(), &agentsv1alpha1.AgentSandbox{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"}}, p); err != nil {
			t.Fatalf("patch %s: %v", patch, err)
		}
	}

	waitPolicy("the default None: policyTypes Ingress and no ingress rule, beside egress Internet", func() bool {
		return nothingIn() && hasType(networkingv1.PolicyTypeEgress) && len(np.Spec.Egress) > 0 &&
			np.Spec.PodSelector.MatchLabels[agentsv1alpha1.ClassLabel] == "pool"
	})

	patchClass(`{"spec":{"ingress":"SameNamespace"}}`)
	waitPolicy("SameNamespace: one rule from the pods of the namespace", sameNamespaceOnly)

	// Widened by hand (as admin: tenants cannot touch it, see test/attack) to every
	// namespace: the manager restores the class's rule.
	widened := np.DeepCopy()
	widened.Spec.Ingress[0].From[0].NamespaceSelector = &metav1.LabelSelector{}
	if err := k8s.Update(context.Background(), widened); err != nil {
		t.Fatalf("widening the policy's ingress: %v", err)
	}
	waitPolicy("the widened ingress restored to the namespace's pods", sameNamespaceOnly)

	patchClass(`{"spec":{"egress":"Unrestricted"}}`)
	waitPolicy("egress Unrestricted: the policy stays for ingress, without Egress", func() bool {
		return sameNamespaceOnly() && !hasType(networkingv1.PolicyTypeEgress) && len(np.Spec.Egress) == 0
	})

	patchClass(`{"spec":{"ingress":"None"}}`)
	waitPolicy("None: no ingress rule", func() bool { return nothingIn() && !hasType(networkingv1.PolicyTypeEgress) })
}
