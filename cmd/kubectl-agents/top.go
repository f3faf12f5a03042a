package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

func newTopCommand(root *rootOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show the sandboxes' footprint per class and namespace",
		Long: `top shows, from each sandbox class's status, its warm pool (ready of desired), its active
sessions, and the utility VM footprint: per sandbox, and in total over the class's live
pods (warm and bound). With several classes in a namespace a TOTAL line sums them.`,
		Example: `  kubectl agents top -n agents
  kubectl agents top -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return root.top(ctx, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	return cmd
}

func (o *rootOptions) top(ctx context.Context, all bool) error {
	kube, err := o.kube()
	if err != nil {
		return err
	}
	opts, err := o.listScope(all)
	if err != nil {
		return err
	}
	classes := &agentsv1alpha1.AgentSandboxList{}
	if err := kube.List(ctx, classes, opts...); err != nil {
		return fmt.Errorf("list sandbox classes: %w", err)
	}
	items := classes.Items
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tSANDBOX\tWARM\tSESSIONS\tMEMORY/SANDBOX\tVCPUS/SANDBOX\tMEMORY\tVCPUS")
	type total struct {
		classes, ready, desired, sessions int32
		memory                            resource.Quantity
		vcpus                             int32
	}
	var sum total
	flush := func(ns string) {
		if sum.classes > 1 {
			fmt.Fprintf(w, "%s\tTOTAL\t%d/%d\t%d\t\t\t%s\t%d\n", ns, sum.ready, sum.desired, sum.sessions, sum.memory.String(), sum.vcpus)
		}
		sum = total{}
	}
	for i, c := range items {
		if i > 0 && items[i-1].Namespace != c.Namespace {
			flush(items[i-1].Namespace)
		}
		per, tot := agentsv1alpha1.Footprint{}, agentsv1alpha1.Footprint{}
		if c.Status.Footprint != nil {
			per, tot = c.Status.Footprint.PerSandbox, c.Status.Footprint.Total
		}
		desired := int32(0)
		if c.Spec.Replicas != nil {
			desired = *c.Spec.Replicas
		}
		fmt.Fprintf(w, "%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\n", c.Namespace, c.Name, c.Status.ReadyReplicas, desired,
			c.Status.ActiveSessions, quantityOrDash(per.Memory), countOrDash(per.VCPUs), quantityOrDash(tot.Memory), countOrDash(tot.VCPUs))
		sum.classes++
		sum.ready += c.Status.ReadyReplicas
		sum.desired += desired
		sum.sessions += c.Status.ActiveSessions
		sum.memory.Add(tot.Memory)
		sum.vcpus += tot.VCPUs
	}
	if len(items) > 0 {
		flush(items[len(items)-1].Namespace)
	}
	return w.Flush()
}

func quantityOrDash(q resource.Quantity) string {
	if q.IsZero() {
		return "-"
	}
	return q.String()
}

func countOrDash(n int32) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
