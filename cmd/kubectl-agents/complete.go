package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// Shell completion: cobra's "completion" command writes the script; kubectl completes a
// plugin's arguments through an executable named kubectl_complete-agents on PATH that
// runs "kubectl-agents __complete "$@"" (see docs/client.md).

const completionTimeout = 5 * time.Second

// completeSandboxes completes the first argument with the namespace's sandbox classes.
func (o *rootOptions) completeSandboxes(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return o.sandboxNames(toComplete), cobra.ShellCompDirectiveNoFileComp
}

func (o *rootOptions) sandboxNames(prefix string) []string {
	kube, ns, ctx, cancel, ok := o.completionClient()
	if !ok {
		return nil
	}
	defer cancel()
	list := &agentsv1alpha1.AgentSandboxList{}
	if err := kube.List(ctx, list, crclient.InNamespace(ns)); err != nil {
		return nil
	}
	var names []string
	for _, s := range list.Items {
		if strings.HasPrefix(s.Name, prefix) {
			names = append(names, s.Name)
		}
	}
	return names
}

// completeSessionsFirst completes the first argument with the namespace's live sessions.
func (o *rootOptions) completeSessionsFirst(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return o.sessionNames(toComplete, ""), cobra.ShellCompDirectiveNoFileComp
}

// completeCp completes SESSION: as well as local paths.
func (o *rootOptions) completeCp(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 1 || strings.Contains(toComplete, ":") {
		return nil, cobra.ShellCompDirectiveDefault
	}
	return o.sessionNames(toComplete, ":"), cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveDefault
}

func (o *rootOptions) sessionNames(prefix, suffix string) []string {
	kube, ns, ctx, cancel, ok := o.completionClient()
	if !ok {
		return nil
	}
	defer cancel()
	list := &agentsv1alpha1.AgentSessionList{}
	if err := kube.List(ctx, list, crclient.InNamespace(ns)); err != nil {
		return nil
	}
	var names []string
	for _, s := range list.Items {
		if !ended(s) && strings.HasPrefix(s.Name, prefix) {
			names = append(names, s.Name+suffix)
		}
	}
	return names
}

func (o *rootOptions) completeNamespaces(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	kube, _, ctx, cancel, ok := o.completionClient()
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer cancel()
	list := &corev1.NamespaceList{}
	if err := kube.List(ctx, list); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, n := range list.Items {
		if strings.HasPrefix(n.Name, toComplete) {
			names = append(names, n.Name)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (o *rootOptions) completionClient() (crclient.Client, string, context.Context, context.CancelFunc, bool) {
	kube, err := o.kube()
	if err != nil {
		return nil, "", nil, nil, false
	}
	ns, err := o.namespace()
	if err != nil {
		return nil, "", nil, nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	return kube, ns, ctx, cancel, true
}
