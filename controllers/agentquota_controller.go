package controllers

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// AgentQuotaReconciler reports each AgentQuota's usage and queue. Enforcement itself happens
// where sessions are admitted and pods created (quotaKeeper); this controller only shows it.
type AgentQuotaReconciler struct {
	client.Client
	config Config
	quota  *quotaKeeper
}

func newAgentQuotaReconciler(d reconcilerDeps, shared *sharedState) *AgentQuotaReconciler {
	return &AgentQuotaReconciler{Client: d.client, config: d.config, quota: shared.quota}
}

// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentquotas,verbs=get;list;watch
// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentquotas/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Reconcile computes one quota's status and writes it when it changed.
func (r *AgentQuotaReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	q := &agentsv1alpha1.AgentQuota{}
	if err := r.Get(ctx, req.NamespacedName, q); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.quotaDeleted(ctx, req.Namespace)
		}
		return ctrl.Result{}, err
	}
	enforced, err := r.quota.quotaFor(ctx, q.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	u, err := r.quota.currentUsage(ctx, q.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}

	status := q.Status.DeepCopy()
	status.ObservedGeneration = q.Generation
	status.Used = agentsv1alpha1.QuotaLimits{
		Sessions:      ptr.To(int32(u.sessions)),
		WarmSandboxes: ptr.To(int32(u.warm)),
		Memory:        ptr.To(u.memory.DeepCopy()),
		CPU:           resource.NewQuantity(u.cpu, resource.DecimalSI),
	}
	status.Queued = int32(len(u.waiting))
	status.QueueHead = ""
	if len(u.waiting) > 0 {
		status.QueueHead = u.waiting[0].Name
	}
	active := metav1.Condition{Type: agentsv1alpha1.QuotaActive, Status: metav1.ConditionTrue,
		Reason: agentsv1alpha1.ReasonEnforced, Message: "this quota is enforced for the namespace", ObservedGeneration: q.Generation}
	if enforced != nil && enforced.name != q.Name {
		active.Status, active.Reason = metav1.ConditionFalse, agentsv1alpha1.ReasonConflict
		active.Message = fmt.Sprintf("namespace %s has more than one AgentQuota; only the oldest, %s, is enforced: delete this one or merge its limits into %s",
			q.Namespace, enforced.name, enforced.name)
	}
	meta.SetStatusCondition(&status.Conditions, active)

	if active.Status == metav1.ConditionTrue {
		recordQuotaMetrics(q.Namespace, &q.Spec.Hard, &status.Used, status.Queued)
	}
	if sameStatus(&q.Status, status) {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(q.DeepCopy())
	q.Status = *status
	return ctrl.Result{}, client.IgnoreNotFound(r.Status().Patch(ctx, q, patch))
}

// quotaDeleted drops the namespace's quota series once its last AgentQuota is gone. With
// another one left, that one (reconciled too: see SetupWithManager) reports its own.
func (r *AgentQuotaReconciler) quotaDeleted(ctx context.Context, ns string) error {
	list := &agentsv1alpha1.AgentQuotaList{}
	if err := r.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	if len(list.Items) == 0 {
		forgetQuotaMetrics(ns)
	}
	return nil
}

// forgetQuotaMetrics deletes the quota series of namespace ns.
func forgetQuotaMetrics(ns string) {
	quotaUsed.DeletePartialMatch(prometheus.Labels{"namespace": ns})
	quotaHard.DeletePartialMatch(prometheus.Labels{"namespace": ns})
	queuedSessions.DeleteLabelValues(ns)
}

// namespaceDeleted forgets what the quota keeps for a deleted namespace: its ledger and its
// queue-wait series.
func (r *AgentQuotaReconciler) namespaceDeleted(ns string) {
	r.quota.forgetNamespace(ns)
	queueWait.DeleteLabelValues(ns)
}

func recordQuotaMetrics(ns string, hard, used *agentsv1alpha1.QuotaLimits, queued int32) {
	for _, m := range []struct {
		resource   string
		hard, used *float64
	}{
		{"sessions", int32Float(hard.Sessions), int32Float(used.Sessions)},
		{"warmSandboxes", int32Float(hard.WarmSandboxes), int32Float(used.WarmSandboxes)},
		{"memory", quantityFloat(hard.Memory), quantityFloat(used.Memory)},
		{"cpu", quantityFloat(hard.CPU), quantityFloat(used.CPU)},
	} {
		if m.used != nil {
			quotaUsed.WithLabelValues(ns, m.resource).Set(*m.used)
		}
		if m.hard != nil {
			quotaHard.WithLabelValues(ns, m.resource).Set(*m.hard)
		} else {
			quotaHard.DeleteLabelValues(ns, m.resource)
		}
	}
	queuedSessions.WithLabelValues(ns).Set(float64(queued))
}

func int32Float(v *int32) *float64 {
	if v == nil {
		return nil
	}
	f := float64(*v)
	return &f
}

func quantityFloat(q *resource.Quantity) *float64 {
	if q == nil {
		return nil
	}
	f := q.AsApproximateFloat64()
	return &f
}

// SetupWithManager registers the quota controller: any session, hyperpool pod or quota
// change in a namespace re-checks the namespace's quotas (the workqueue merges bursts). A
// namespace's deletion drops what the quota keeper holds for it.
func (r *AgentQuotaReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentquota").
		For(&agentsv1alpha1.AgentQuota{}).
		// A quota deleted: the one enforced next (if any) reports its series.
		Watches(&agentsv1alpha1.AgentQuota{}, handler.EnqueueRequestsFromMapFunc(r.quotasInNamespace),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc:  func(event.CreateEvent) bool { return false },
				UpdateFunc:  func(event.UpdateEvent) bool { return false },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		WatchesMetadata(&corev1.Namespace{}, handler.Funcs{
			DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], _ requestQueue) {
				r.namespaceDeleted(e.Object.GetName())
			},
		}).
		Watches(&agentsv1alpha1.AgentSession{}, handler.EnqueueRequestsFromMapFunc(r.quotasInNamespace)).
		// Sandbox pods through the book, once it shows them: the status is measured there.
		WatchesRawSource(bookSource(r.quota.book, func(q requestQueue, old, cur *poolbook.Pod) {
			p := cur
			if p == nil {
				p = old
			}
			for _, req := range r.quotasIn(context.Background(), p.Key.Namespace) {
				q.Add(req)
			}
		})).
		Complete(observed(r.config, "agentquota", r))
}

func (r *AgentQuotaReconciler) quotasInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	return r.quotasIn(ctx, o.GetNamespace())
}

// quotasIn are the requests of namespace ns's quotas.
func (r *AgentQuotaReconciler) quotasIn(ctx context.Context, ns string) []reconcile.Request {
	list := &agentsv1alpha1.AgentQuotaList{}
	if err := r.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "listing AgentQuotas to re-check")
		return nil
	}
	return requestsOf(list.Items)
}
