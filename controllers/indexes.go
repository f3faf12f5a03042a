package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// Cache indexes, registered in one place. Every lookup the controllers make on a hot path
// goes through one of these rather than a namespace-wide list.
const (
	// podWarmIndex: a class's pods not bound to a session, by AgentSandbox name: the pool's
	// own pods (terminating ones included) and a bind's candidates. A class's bound pods are
	// kept apart because they can number thousands; a bind and a pool reconcile need only
	// their count per node or in all.
	podWarmIndex = "pod.warm"
	// podBoundIndex: a class's pods bound to a session, by AgentSandbox name.
	podBoundIndex = "pod.bound"
	// podBoundNodeIndex: a class's live bound pods by "<AgentSandbox>/<node>": the class's
	// load on a node, which a bind ranks warm pods by.
	podBoundNodeIndex = "pod.boundNode"
	// podSessionIndex: pods by the AgentSession they are bound to.
	podSessionIndex = "pod.session"
	// sessionSandboxIndex: sessions by spec.sandboxName.
	sessionSandboxIndex = "session.sandbox"
	// sessionWaitingIndex: unbound, unfinished sessions by spec.sandboxName that are not
	// queued behind their quota; the sessions a newly Ready warm pod can serve. (Queued
	// sessions are woken by queueOf, only those the quota would admit.)
	sessionWaitingIndex = "session.waiting"
	// sessionNodeIndex: bound sessions by status.nodeName, to end them when their node goes.
	sessionNodeIndex = "session.node"
	// sessionQueuedIndex: "true" for sessions in phase Queued, the ones a freed quota wakes.
	sessionQueuedIndex = "session.queued"
)

// RegisterIndexes adds the controllers' field indexes to the manager's cache.
func RegisterIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	indexes := []struct {
		obj     client.Object
		field   string
		extract client.IndexerFunc
	}{
		{&corev1.Pod{}, podWarmIndex, func(o client.Object) []string {
			if class, session := sandboxAndSession(o); class != "" && session == "" {
				return []string{class}
			}
			return nil
		}},
		{&corev1.Pod{}, podBoundIndex, func(o client.Object) []string {
			if class, session := sandboxAndSession(o); class != "" && session != "" {
				return []string{class}
			}
			return nil
		}},
		{&corev1.Pod{}, podBoundNodeIndex, func(o client.Object) []string {
			class, session := sandboxAndSession(o)
			node := o.(*corev1.Pod).Spec.NodeName
			if class == "" || session == "" || node == "" || !o.GetDeletionTimestamp().IsZero() {
				return nil
			}
			return []string{boundNodeKey(class, node)}
		}},
		{&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)},
		{&agentsv1alpha1.AgentSession{}, sessionSandboxIndex, func(o client.Object) []string {
			return []string{o.(*agentsv1alpha1.AgentSession).Spec.SandboxName}
		}},
		{&agentsv1alpha1.AgentSession{}, sessionWaitingIndex, func(o client.Object) []string {
			s := o.(*agentsv1alpha1.AgentSession)
			if s.Status.PodName != "" || s.Status.Phase.IsFinished() || s.Status.Phase == agentsv1alpha1.SessionQueued {
				return nil
			}
			return []string{s.Spec.SandboxName}
		}},
		{&agentsv1alpha1.AgentSession{}, sessionQueuedIndex, func(o client.Object) []string {
			if o.(*agentsv1alpha1.AgentSession).Status.Phase == agentsv1alpha1.SessionQueued {
				return []string{"true"}
			}
			return nil
		}},
		{&agentsv1alpha1.AgentSession{}, sessionNodeIndex, func(o client.Object) []string {
			s := o.(*agentsv1alpha1.AgentSession)
			if s.Status.NodeName == "" || s.Status.Phase.IsFinished() {
				return nil
			}
			return []string{s.Status.NodeName}
		}},
	}
	for _, ix := range indexes {
		if err := indexer.IndexField(ctx, ix.obj, ix.field, ix.extract); err != nil {
			return err
		}
	}
	return nil
}

func sandboxAndSession(o client.Object) (sandbox, session string) {
	l := o.GetLabels()
	return l[agentsv1alpha1.ClassLabel], l[agentsv1alpha1.SessionLabel]
}

func boundNodeKey(sandbox, node string) string { return sandbox + "/" + node }

func labelIndex(key string) client.IndexerFunc {
	return func(o client.Object) []string {
		if v, ok := o.GetLabels()[key]; ok && v != "" {
			return []string{v}
		}
		return nil
	}
}
