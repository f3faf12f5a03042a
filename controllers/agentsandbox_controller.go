package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/expectations"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// maxCreationsPerReconcile bounds one reconcile's pod creations, as the ReplicaSet
// controller's burstReplicas does, so one pool cannot monopolise the API server.
const maxCreationsPerReconcile = 500

// poolCountsInterval is the least time between two status writes of one pool that only
// move its counts (replicas, readyReplicas, activeSessions, the footprint total). Every bind
// and every refill moves them; writing each would add an API write per bind for a number
// that metrics report in real time anyway. The Ready condition moving between PoolReady
// and PoolFilling is a count change too (countsOnlyReady). Other condition changes
// (Degraded, any other Ready reason) and a new generation are written at once.
const poolCountsInterval = time.Second

// AgentSandboxReconciler keeps each class's warm pool at spec.replicas Ready pods.
type AgentSandboxReconciler struct {
	client.Client
	// apiReader reads around the cache before a pod that looks stray is deleted.
	apiReader client.Reader
	config    Config
	clock     clock.PassiveClock
	quota     *quotaKeeper
	// takes is when each pool last had a warm sandbox taken (spec.replenish.quietPeriod);
	// the session controller records them.
	takes *takeClock
	// demand is what the autoscaler measures of each pool: binds (recorded by the session
	// controller) and refill times.
	demand *demandBook

	// book counts the class's pods from pod events; the reconciler lists pods only to pick
	// which to delete.
	book         *poolbook.Book
	factory      *podFactory
	builds       *nodeBuilds // the nodes' Windows builds, shared with the session controller
	expectations *expectations.Pods
	// notReadyStreak counts each pool's consecutive warm pods that timed out before Ready;
	// the ready deadline doubles with it, so a pool whose pods never start backs off.
	streakMu       sync.Mutex
	notReadyStreak map[types.NamespacedName]int
	// lastStatusWrite is when each pool's status was last written (see poolCountsInterval).
	lastStatusWrite sync.Map // types.NamespacedName -> time.Time
	// vmSizes is what the node agents measured of each class's VMs (VMSizeApplied).
	vmSizes *vmSizeReports
	// runtimes is what the node agents found out about the runtime handlers (RuntimeReady).
	runtimes *runtimeReports
	// runtimeAnnounced is the RuntimeReady reason each class last had a Warning Event for.
	runtimeAnnounced sync.Map // types.NamespacedName -> string
	recorder         recorder.EventRecorder
}

func newAgentSandboxReconciler(d reconcilerDeps, shared *sharedState) *AgentSandboxReconciler {
	return &AgentSandboxReconciler{Client: d.client, apiReader: d.apiReader,
		config: d.config, clock: d.clock, quota: shared.quota, takes: shared.takes, demand: shared.demand, book: shared.book, factory: shared.factory, builds: shared.builds,
		expectations: expectations.NewPods(d.clock), notReadyStreak: map[types.NamespacedName]int{},
		vmSizes: newVMSizeReports(), runtimes: newRuntimeReports(), recorder: d.recorder(SandboxEventSource)}
}

// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsandboxes,verbs=get;list;watch
// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsandboxes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsandboxes/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=node.k8s.io,resources=runtimeclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// poolPods is a class's pods from the cache, sorted into what the pool logic needs. A
// reconcile lists them only when a step must pick pods to delete (poolStep.list): the
// counts come from the pool book.
type poolPods struct {
	warm        []*corev1.Pod // not bound, not terminating
	bound       []*corev1.Pod // bound to a session, not terminating
	terminating []*corev1.Pod // being deleted, warm or bound: their VMs still run
	// stray are unbound pods labelled for the class that it does not control: their owner
	// reference was removed (an orphaning delete of an earlier class of this name, an
	// edit), or names another object. No one else would delete them.
	stray []*corev1.Pod
}

// Reconcile brings one pool to its target and reports what it sees.
func (r *AgentSandboxReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := r.Get(ctx, req.NamespacedName, sb); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, r.deletePodsOfGoneClass(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !sb.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the garbage collector removes the warm pods it owns
	}

	st := r.newPoolStep(sb)

	// The egress policy comes first: no pod of the class may exist without it.
	egressBlk, egressErr := r.reconcileEgressPolicy(ctx, sb)
	// Resolved once: the recipe and the RuntimeReady condition both need it.
	rcName, runtimeClass, err := r.factory.runtimeClassFor(ctx, sb)
	if err != nil {
		return ctrl.Result{}, errors.Join(egressErr, err)
	}
	st.runtimeClass = runtimeClass
	recipe, blk, err := r.factory.recipeWith(ctx, sb, rcName, runtimeClass)
	if err != nil {
		return ctrl.Result{}, errors.Join(egressErr, err)
	}
	if egressBlk != nil && blk == nil {
		recipe, blk = nil, egressBlk
	}
	if problem := sandboxSpecProblem(sb); problem != "" {
		recipe, blk = nil, &blocker{Reason: agentsv1alpha1.ReasonInvalidSpec, Message: problem}
	}
	st.recipe, st.blocker = recipe, blk

	stepErr := errors.Join(egressErr, r.deleteStrayPods(ctx, st), r.holdGracePeriods(ctx, st))
	if recipe != nil {
		stepErr = errors.Join(stepErr, r.replaceStuckWarmPods(ctx, st), r.rollOutTemplate(ctx, st))
	}
	// With spec.autoscaling the pool's target is the autoscaler's, decided first.
	stepErr = errors.Join(stepErr, r.autoscale(ctx, st))
	// Scaling down needs no recipe: a pool scaled to zero empties even when it is blocked.
	stepErr = errors.Join(stepErr, r.scaleWarmPool(ctx, st))

	if err := r.writeStatus(ctx, st); err != nil {
		return ctrl.Result{}, errors.Join(stepErr, err)
	}
	if stepErr != nil {
		return ctrl.Result{}, stepErr
	}
	return ctrl.Result{RequeueAfter: st.requeueAfter}, nil
}

// poolStep carries one reconcile's view of a pool between its steps.
type poolStep struct {
	sb    *agentsv1alpha1.AgentSandbox
	shape *poolbook.Shape
	// view is the class's pods as the book counted them when the reconcile began.
	view    poolbook.Pool
	recipe  *podRecipe
	blocker *blocker
	// runtimeClass is the RuntimeClass the class's pods use, nil when it does not exist.
	runtimeClass     *nodev1.RuntimeClass
	pendingCreations map[string]bool
	pendingDeletions map[string]bool
	// pods are the class's pods from the cache, once a step has listed them (list).
	pods *poolPods

	forbidden    string   // the API's refusal of a pod creation, if any
	quotaBlocker *blocker // the namespace's quota holds the pool below its target
	notReady     int      // warm pods replaced this round for not becoming Ready in time
	// replenishHeld: taken sandboxes wait for spec.replenish.quietPeriod.
	replenishHeld bool
	requeueAfter  time.Duration
	// autoscaling is the autoscaler's decision, with spec.autoscaling.
	autoscaling *autoscaleResult
}

// newPoolStep reads the pool's counts from the book and its expectations, lowered against
// the book, and lists nothing.
func (r *AgentSandboxReconciler) newPoolStep(sb *agentsv1alpha1.AgentSandbox) *poolStep {
	key := client.ObjectKeyFromObject(sb)
	st := &poolStep{sb: sb, shape: bookShape(sb)}
	st.view = r.book.Pool(key, sb.UID, st.shape, classGraceSeconds(sb))
	present := func(name string) bool { return r.book.Has(types.NamespacedName{Namespace: sb.Namespace, Name: name}) }
	warm := func(name string) bool {
		p, ok := r.book.Get(types.NamespacedName{Namespace: sb.Namespace, Name: name})
		return ok && p.Warm()
	}
	st.pendingCreations, st.pendingDeletions = r.expectations.Pending(key, present, warm)
	if st.pendingCreations == nil {
		st.pendingCreations = map[string]bool{}
	}
	if st.pendingDeletions == nil {
		st.pendingDeletions = map[string]bool{}
	}
	return st
}

func (st *poolStep) requeueIn(d time.Duration) {
	if d > 0 && (st.requeueAfter == 0 || d < st.requeueAfter) {
		st.requeueAfter = d
	}
}

// list lists the class's pods from the cache, once per reconcile, for a step that must
// pick which pods to delete. The counts never need it.
func (r *AgentSandboxReconciler) list(ctx context.Context, st *poolStep) (*poolPods, error) {
	if st.pods != nil {
		return st.pods, nil
	}
	pods, err := r.listPoolPods(ctx, st.sb)
	if err != nil {
		return nil, err
	}
	st.pods = &pods
	return st.pods, nil
}

// liveWarm returns the listed warm pods the pool counts: the cache's, minus those it
// deleted. Only after list.
func (st *poolStep) liveWarm() []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range st.pods.warm {
		if !st.pendingDeletions[p.Name] {
			out = append(out, p)
		}
	}
	return out
}

func (r *AgentSandboxReconciler) listPoolPods(ctx context.Context, sb *agentsv1alpha1.AgentSandbox) (poolPods, error) {
	poolListCalls.Inc()
	var pods poolPods
	for _, index := range []string{podWarmIndex, podBoundIndex} {
		list := &corev1.PodList{}
		if err := r.List(ctx, list, client.InNamespace(sb.Namespace), client.MatchingFields{index: sb.Name}, client.UnsafeDisableDeepCopy); err != nil {
			return poolPods{}, fmt.Errorf("listing pods of AgentSandbox %s: %w", sb.Name, err)
		}
		for i := range list.Items {
			p := &list.Items[i]
			switch {
			case !p.DeletionTimestamp.IsZero():
				pods.terminating = append(pods.terminating, p)
			case p.Labels[agentsv1alpha1.SessionLabel] != "":
				pods.bound = append(pods.bound, p)
			case metav1.IsControlledBy(p, sb):
				pods.warm = append(pods.warm, p)
			default:
				pods.stray = append(pods.stray, p)
			}
		}
	}
	return pods, nil
}

// replaceStuckWarmPods deletes warm pods that ended (a sandbox never exits on its own) or
// that did not become Ready before the pool's deadline; scaleWarmPool creates their
// replacements. The deadline doubles with each consecutive timeout, so this backs off.
func (r *AgentSandboxReconciler) replaceStuckWarmPods(ctx context.Context, st *poolStep) error {
	key := client.ObjectKeyFromObject(st.sb)
	deadline := r.readyDeadline(key)
	now := r.clock.Now()
	// A pod whose node is gone will never serve anyone, Ready or not: replace it now rather
	// than when the pod garbage collector gets to it. The book names the nodes the warm
	// pods are on, so each is looked up once.
	goneNodes := map[string]bool{}
	for _, node := range st.view.WarmNodes {
		gone, err := nodeGone(ctx, r.Client, node)
		if err != nil {
			return err
		}
		if gone {
			goneNodes[node] = true
		}
	}
	oldest := st.view.OldestNotReady
	if len(goneNodes) == 0 && st.view.WarmEnded == 0 && (oldest.IsZero() || now.Sub(oldest) < deadline) {
		// Nothing to replace: no pod to pick, so no list.
		if !oldest.IsZero() {
			st.requeueIn(deadline - now.Sub(oldest))
		}
		if st.view.WarmReady > 0 {
			r.streakMu.Lock()
			delete(r.notReadyStreak, key)
			r.streakMu.Unlock()
		}
		return nil
	}
	if _, err := r.list(ctx, st); err != nil {
		return err
	}
	var errs []error
	sawReady := false
	for _, p := range st.liveWarm() {
		if goneNodes[p.Spec.NodeName] {
			errs = append(errs, r.deleteWarmPod(ctx, st, p))
			continue
		}
		if podstate.Ready(p) {
			sawReady = true
			continue
		}
		age := now.Sub(p.CreationTimestamp.Time)
		stuck := !podstate.Terminated(p) && age >= deadline
		if !podstate.Terminated(p) && !stuck {
			st.requeueIn(deadline - age)
			continue
		}
		if stuck {
			st.notReady++
		}
		errs = append(errs, r.deleteWarmPod(ctx, st, p))
	}
	r.streakMu.Lock()
	switch {
	case st.notReady > 0:
		r.notReadyStreak[key]++
	case sawReady:
		delete(r.notReadyStreak, key)
	}
	r.streakMu.Unlock()
	return errors.Join(errs...)
}

func (r *AgentSandboxReconciler) readyDeadline(key types.NamespacedName) time.Duration {
	r.streakMu.Lock()
	defer r.streakMu.Unlock()
	return r.config.WarmPodReadyTimeout << min(r.notReadyStreak[key], 4)
}

// rollOutTemplate replaces warm pods of an older template. Recreate deletes them, at most
// maxConcurrent replacements in flight; OnReplenish leaves them to be taken by sessions
// (scaleWarmPool trims old ones first when the pool shrinks).
func (r *AgentSandboxReconciler) rollOutTemplate(ctx context.Context, st *poolStep) error {
	strategy := st.sb.Spec.UpdateStrategy
	if strategy.Type == agentsv1alpha1.OnReplenishUpdateStrategy || st.view.OldTemplate == 0 {
		return nil
	}
	if _, err := r.list(ctx, st); err != nil {
		return err
	}
	maxConcurrent := 5
	if strategy.MaxConcurrent != nil {
		maxConcurrent = int(*strategy.MaxConcurrent)
	}
	var old []*corev1.Pod
	inFlight := len(st.pendingCreations) // replacements created but not yet seen
	for _, p := range st.liveWarm() {
		switch {
		case p.Labels[agentsv1alpha1.TemplateHashLabel] != st.recipe.templateHash:
			old = append(old, p)
		case !podstate.Ready(p):
			inFlight++
		}
	}
	budget := maxConcurrent - inFlight
	// Prefer deleting old pods that are not Ready: they serve no one.
	slices.SortStableFunc(old, func(a, b *corev1.Pod) int { return boolOrder(podstate.Ready(a), podstate.Ready(b)) })
	var errs []error
	for _, p := range old[:min(max(budget, 0), len(old))] {
		errs = append(errs, r.deleteWarmPod(ctx, st, p))
	}
	return errors.Join(errs...)
}

// scaleWarmPool creates or deletes warm pods to reach spec.replicas, counting creations the
// cache has not shown yet and not counting deletions it still shows. When the namespace
// holds more warm pods than its quota's warmSandboxes, the pool gives up its share of the
// excess: in proportion to its warm pods, so the pools together give up the excess, not
// each of them all of it.
func (r *AgentSandboxReconciler) scaleWarmPool(ctx context.Context, st *poolStep) error {
	counts := r.countWarm(st)
	have := counts.warm + len(st.pendingCreations)
	want := int(ptr.Deref(st.sb.Spec.Replicas, 1))
	over, err := r.quota.excessWarm(ctx, st.sb.Namespace)
	if err != nil {
		return err
	}
	// The excess is measured on the cache, which still shows the pods this pool deleted:
	// the share is taken from the same count, so a deletion in flight is not given twice.
	counted := st.view.Warm + len(st.pendingCreations)
	if share := over.share(st.sb.Name, counted); share > 0 {
		want = min(want, counted-share)
		st.quotaBlocker = &blocker{Reason: agentsv1alpha1.ReasonQuotaLimited, Message: fmt.Sprintf(
			"warmSandboxes: the namespace holds %d warm sandboxes more than the %d allowed by %s; this pool gives up %d of them",
			over.excess, *over.quota.hard.WarmSandboxes, over.quota.describe(), share)}
	}

	hash := templateHash(st.sb)
	switch {
	case have < want && st.recipe != nil:
		if wait := r.replenishWait(st, counts.ready, want); wait > 0 {
			st.replenishHeld = true
			st.requeueIn(wait)
			return nil
		}
		n := min(want-have, maxCreationsPerReconcile, shutdownSurgeLeft(st, have, want))
		if n == 0 {
			return nil // as many VMs are still shutting down: each one gone wakes the pool
		}
		return r.createWarmPods(ctx, st, n)
	case have > want && len(st.pendingCreations) == 0:
		if _, err := r.list(ctx, st); err != nil {
			return err
		}
		warm := st.liveWarm()
		// Delete the least useful first: not Ready, then of an old template, then newest.
		slices.SortStableFunc(warm, func(a, b *corev1.Pod) int {
			if c := boolOrder(podstate.Ready(a), podstate.Ready(b)); c != 0 {
				return c
			}
			if c := boolOrder(a.Labels[agentsv1alpha1.TemplateHashLabel] == hash,
				b.Labels[agentsv1alpha1.TemplateHashLabel] == hash); c != 0 {
				return c
			}
			return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
		})
		var errs []error
		for _, p := range warm[:min(have-want, len(warm))] {
			errs = append(errs, r.deleteWarmPod(ctx, st, p))
		}
		return errors.Join(errs...)
	}
	return nil
}

// replenishWait is how long the pool holds back replacing taken sandboxes: until
// spec.replenish.quietPeriod has passed since the last take, unless fewer than minReady
// warm sandboxes are Ready. Zero: create now.
func (r *AgentSandboxReconciler) replenishWait(st *poolStep, ready, want int) time.Duration {
	spec := st.sb.Spec.Replenish
	if spec.QuietPeriod == nil || spec.QuietPeriod.Duration <= 0 || r.takes == nil {
		return 0
	}
	minReady := int(ptr.Deref(spec.MinReady, int32((want+1)/2)))
	if ready < minReady {
		return 0
	}
	since, taken := r.takes.since(client.ObjectKeyFromObject(st.sb))
	if !taken || since >= spec.QuietPeriod.Duration {
		return 0
	}
	return spec.QuietPeriod.Duration - since
}

// boolOrder sorts false before true.
func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}
