package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

func newLsCommand(root *rootOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List sessions with their remaining lifetime and idle time",
		Long: `ls lists the namespace's sessions: phase, class, warm or cold, the time left before the
hard deadline (status.expiryTime), how long the session has been idle (since its
agents.hyperpool.io/last-activity heartbeat, else its bind) and its idle timeout (the
session's, else its class's).`,
		Example: `  kubectl agents ls -n agents
  kubectl agents ls -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return root.ls(ctx, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list the sessions of every namespace")
	return cmd
}

func (o *rootOptions) ls(ctx context.Context, all bool) error {
	kube, err := o.kube()
	if err != nil {
		return err
	}
	opts, err := o.listScope(all)
	if err != nil {
		return err
	}
	sessions := &agentsv1alpha1.AgentSessionList{}
	if err := kube.List(ctx, sessions, opts...); err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	classes := &agentsv1alpha1.AgentSandboxList{}
	// The idle timeout of a session without its own is its class's; a caller who cannot
	// list classes still gets the rest.
	_ = kube.List(ctx, classes, opts...)
	classIdle := map[string]time.Duration{}
	for _, c := range classes.Items {
		classIdle[c.Namespace+"/"+c.Name] = classIdleTimeout(c.Spec.Lifetime)
	}
	items := sessions.Items
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	now := time.Now()
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	if all {
		fmt.Fprint(w, "NAMESPACE\t")
	}
	fmt.Fprintln(w, "NAME\tSANDBOX\tPHASE\tSTART\tREMAINING\tIDLE\tIDLE-TIMEOUT\tPOD")
	for _, s := range items {
		if all {
			fmt.Fprintf(w, "%s\t", s.Namespace)
		}
		idleTimeout := classIdle[s.Namespace+"/"+s.Spec.SandboxName]
		if s.Spec.IdleTimeout != nil && (idleTimeout == 0 || s.Spec.IdleTimeout.Duration < idleTimeout) {
			idleTimeout = s.Spec.IdleTimeout.Duration
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec.SandboxName, orDash(string(s.Status.Phase)),
			orDash(string(s.Status.StartType)), remaining(s, now), idle(s, now), durationOrDash(idleTimeout), orDash(s.Status.PodName))
	}
	return w.Flush()
}

// remaining is the time to the hard deadline of a live session.
func remaining(s agentsv1alpha1.AgentSession, now time.Time) string {
	if ended(s) {
		return "ended"
	}
	if s.Status.ExpiryTime == nil {
		return "-"
	}
	return durationOrDash(max(s.Status.ExpiryTime.Sub(now), 0))
}

// idle is the time since the last heartbeat, else since the bind.
func idle(s agentsv1alpha1.AgentSession, now time.Time) string {
	if ended(s) {
		return "-"
	}
	since := time.Time{}
	if s.Status.BoundTime != nil {
		since = s.Status.BoundTime.Time
	}
	if v := s.Annotations[agentsv1alpha1.LastActivityAnnotation]; v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.After(since) {
			since = t
		}
	}
	if since.IsZero() {
		return "-"
	}
	return max(now.Sub(since), 0).Round(time.Second).String()
}

func ended(s agentsv1alpha1.AgentSession) bool {
	switch s.Status.Phase {
	case agentsv1alpha1.SessionExpired, agentsv1alpha1.SessionFailed, agentsv1alpha1.SessionTerminated:
		return true
	}
	return s.Status.EndTime != nil
}

func durationOrDash(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// classIdleTimeout is a class's idle timeout: its own, else 15m or its max lifetime when
// that is shorter (the API's defaults).
func classIdleTimeout(l agentsv1alpha1.LifetimeSpec) time.Duration {
	if l.IdleTimeout != nil {
		return l.IdleTimeout.Duration
	}
	d := 15 * time.Minute
	if l.MaxLifetime != nil && l.MaxLifetime.Duration < d {
		d = l.MaxLifetime.Duration
	}
	return d
}

// listScope is where ls and top list: the namespace, or every one with all.
func (o *rootOptions) listScope(all bool) ([]crclient.ListOption, error) {
	if all {
		return nil, nil
	}
	ns, err := o.namespace()
	if err != nil {
		return nil, err
	}
	return []crclient.ListOption{crclient.InNamespace(ns)}, nil
}
