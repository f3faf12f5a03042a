package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// The event recorders' names: the reportingController of every Event hyperpool writes.
const (
	SandboxEventSource = "hyperpool-sandbox"
	SessionEventSource = "hyperpool-session"
)

// SetupWithManager builds every hyperpool controller and the state they share, and
// registers them, their watches and the cache indexes with mgr. It is the one place where
// anything is constructed: the reconcilers' SetupWithManager methods only declare watches.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if err := RegisterIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("registering cache indexes: %w", err)
	}
	if err := registerSessionCollector(mgr.GetClient()); err != nil {
		return fmt.Errorf("registering the session metrics: %w", err)
	}
	d := reconcilerDeps{client: mgr.GetClient(), apiReader: mgr.GetAPIReader(), config: cfg,
		clock: clock.RealClock{}, recorder: mgr.GetEventRecorder}
	if cfg.Clock != nil {
		d.clock = cfg.Clock
	}
	shared := newSharedState(d)
	pods, err := mgr.GetCache().GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("getting the pod informer: %w", err)
	}
	// One handler: the book first, then the warm candidates.
	if _, err := pods.AddEventHandler(shared.book.Handler(shared.candidates.handler())); err != nil {
		return fmt.Errorf("feeding the pool book from pod events: %w", err)
	}
	if cfg.PoolBookAuditInterval > 0 {
		audit := &bookAudit{book: shared.book, reader: mgr.GetClient(), interval: cfg.PoolBookAuditInterval,
			recorder: d.recorder(SandboxEventSource), settle: bookSettle}
		if err := mgr.Add(audit); err != nil {
			return fmt.Errorf("adding the pool book audit: %w", err)
		}
	}
	if err := newAgentSandboxReconciler(d, shared).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AgentSandbox controller: %w", err)
	}
	if err := newAgentSessionReconciler(d, shared).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AgentSession controller: %w", err)
	}
	if err := newAgentQuotaReconciler(d, shared).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AgentQuota controller: %w", err)
	}
	return nil
}

// reconcilerDeps is what every reconciler takes from the manager and its configuration.
type reconcilerDeps struct {
	client    client.Client
	apiReader client.Reader // around the cache
	config    Config
	clock     clock.PassiveClock
	recorder  func(name string) recorder.EventRecorder
}

// sharedState is the in-memory state more than one reconciler uses. Each holder says in its
// own doc comment why it exists and what a restart loses (docs/design.md lists them).
type sharedState struct {
	quota   *quotaKeeper // grants not yet in the cache, per namespace: admission and pod creation
	takes   *takeClock   // when each pool last had a sandbox taken: replenish quiet periods
	builds  *nodeBuilds  // the Windows nodes' builds: every pod recipe
	factory *podFactory  // resolves and builds a class's pods, for warm pools and cold starts
	demand  *demandBook  // each pool's bind rate and refill times: the autoscaler's inputs
	// candidates: each class's Ready warm pods and per-node load, from pod events; the
	// session side takes from it, the pod informer feeds it.
	candidates *warmCandidates
	// book: every sandbox pod, summed per class and per namespace, from pod events; the
	// pool and the quota count from it (internal/poolbook).
	book *poolbook.Book
}

func newSharedState(d reconcilerDeps) *sharedState {
	builds := &nodeBuilds{}
	demand := newDemandBook(d.clock, d.config)
	book := d.config.PoolBook
	if book == nil {
		book = poolbook.New()
	}
	quota := newQuotaKeeper(d.client, d.config, d.clock)
	quota.book = book
	return &sharedState{
		quota:      quota,
		takes:      newTakeClock(d.clock),
		demand:     demand,
		builds:     builds,
		factory:    &podFactory{reader: d.client, config: d.config, builds: builds},
		candidates: newWarmCandidates(),
		book:       book,
	}
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
