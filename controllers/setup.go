package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// The event recorders' names: the reportingController of every Event hyperpool writes.
const (
	SandboxEventSource = "hyperpool-sandbox"
	SessionEventSource = "hyperpool-session"
)

// SetupWithManager registers the cache indexes and every hyperpool controller with mgr.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if err := RegisterIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("registering cache indexes: %w", err)
	}
	quota := newQuotaKeeper(mgr.GetClient(), cfg.DefaultQuota, cfg.DefaultQuotaNamespaces)
	takes := newTakeClock()
	builds := &nodeBuilds{}
	sandboxes := &AgentSandboxReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder(SandboxEventSource), Config: cfg, Quota: quota, Takes: takes, builds: builds}
	if err := sandboxes.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AgentSandbox controller: %w", err)
	}
	sessions := &AgentSessionReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder(SessionEventSource), Config: cfg, Quota: quota, Takes: takes, builds: builds}
	if err := sessions.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AgentSession controller: %w", err)
	}
	quotas := &AgentQuotaReconciler{Client: mgr.GetClient(), Config: cfg, Quota: quota}
	if err := quotas.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AgentQuota controller: %w", err)
	}
	return nil
}

// observed wraps r so that cfg.ReconcileObserver sees each of its reconciles.
func observed(cfg Config, controller string, r reconcile.Reconciler) reconcile.Reconciler {
	if cfg.ReconcileObserver == nil {
		return r
	}
	return reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		defer cfg.ReconcileObserver(controller, req.NamespacedName)
		return r.Reconcile(ctx, req)
	})
}
