package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/expectations"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/internal/uvm"
	"github.com/hyperpool/hyperpool/internal/windows"
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
	vmSizes  *vmSizeReports
	recorder recorder.EventRecorder
}

func newAgentSandboxReconciler(d reconcilerDeps, shared *sharedState) *AgentSandboxReconciler {
	return &AgentSandboxReconciler{Client: d.client, apiReader: d.apiReader,
		config: d.config, clock: d.clock, quota: shared.quota, takes: shared.takes, demand: shared.demand, factory: shared.factory, builds: shared.builds,
		expectations: expectations.NewPods(d.clock), notReadyStreak: map[types.NamespacedName]int{},
		vmSizes: newVMSizeReports(), recorder: d.recorder(SandboxEventSource)}
}

// takeClock remembers when a session last took a warm sandbox of each pool. It is memory
// only: a new leader starts with none, and its pools refill at once.
type takeClock struct {
	last  sync.Map // types.NamespacedName -> time.Time
	clock clock.PassiveClock
}

func newTakeClock(clk clock.PassiveClock) *takeClock { return &takeClock{clock: clk} }

func (c *takeClock) taken(pool types.NamespacedName) {
	if c != nil {
		c.last.Store(pool, c.clock.Now())
	}
}

func (c *takeClock) forget(pool types.NamespacedName) {
	if c != nil {
		c.last.Delete(pool)
	}
}

func (c *takeClock) since(pool types.NamespacedName) (time.Duration, bool) {
	v, ok := c.last.Load(pool)
	if !ok {
		return 0, false
	}
	return c.clock.Since(v.(time.Time)), true
}

// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsandboxes,verbs=get;list;watch
// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsandboxes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsandboxes/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=node.k8s.io,resources=runtimeclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// poolPods is a class's pods from the cache, sorted into what the pool logic needs.
type poolPods struct {
	all         map[string]bool // every pod of the class, by name
	warm        []*corev1.Pod   // not bound, not terminating
	warmNames   map[string]bool
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

	pods, err := r.listPoolPods(ctx, sb)
	if err != nil {
		return ctrl.Result{}, err
	}
	pendingCreations, pendingDeletions := r.expectations.Observe(req.NamespacedName, pods.all, pods.warmNames)

	// The egress policy comes first: no pod of the class may exist without it.
	egressBlk, egressErr := r.reconcileEgressPolicy(ctx, sb)
	recipe, blk, err := r.factory.recipe(ctx, sb)
	if err != nil {
		return ctrl.Result{}, errors.Join(egressErr, err)
	}
	if egressBlk != nil && blk == nil {
		recipe, blk = nil, egressBlk
	}
	if problem := sandboxSpecProblem(sb); problem != "" {
		recipe, blk = nil, &blocker{Reason: agentsv1alpha1.ReasonInvalidSpec, Message: problem}
	}

	st := &poolStep{sb: sb, pods: pods, recipe: recipe, blocker: blk,
		pendingCreations: pendingCreations, pendingDeletions: pendingDeletions}
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
	sb               *agentsv1alpha1.AgentSandbox
	pods             poolPods
	recipe           *podRecipe
	blocker          *blocker
	pendingCreations map[string]bool
	pendingDeletions map[string]bool

	forbidden    string   // the API's refusal of a pod creation, if any
	quotaBlocker *blocker // the namespace's quota holds the pool below its target
	notReady     int      // warm pods replaced this round for not becoming Ready in time
	// replenishHeld: taken sandboxes wait for spec.replenish.quietPeriod.
	replenishHeld bool
	requeueAfter  time.Duration
	// autoscaling is the autoscaler's decision, with spec.autoscaling.
	autoscaling *autoscaleResult
}

func (st *poolStep) requeueIn(d time.Duration) {
	if d > 0 && (st.requeueAfter == 0 || d < st.requeueAfter) {
		st.requeueAfter = d
	}
}

// liveWarm returns the warm pods the pool counts: the cache's, minus those it deleted.
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
	pods := poolPods{all: map[string]bool{}, warmNames: map[string]bool{}}
	for _, index := range []string{podWarmIndex, podBoundIndex} {
		list := &corev1.PodList{}
		if err := r.List(ctx, list, client.InNamespace(sb.Namespace), client.MatchingFields{index: sb.Name}, client.UnsafeDisableDeepCopy); err != nil {
			return poolPods{}, fmt.Errorf("listing pods of AgentSandbox %s: %w", sb.Name, err)
		}
		for i := range list.Items {
			p := &list.Items[i]
			pods.all[p.Name] = true
			switch {
			case !p.DeletionTimestamp.IsZero():
				pods.terminating = append(pods.terminating, p)
			case p.Labels[agentsv1alpha1.SessionLabel] != "":
				pods.bound = append(pods.bound, p)
			case metav1.IsControlledBy(p, sb):
				pods.warm = append(pods.warm, p)
				pods.warmNames[p.Name] = true
			default:
				pods.stray = append(pods.stray, p)
			}
		}
	}
	return pods, nil
}

// deleteStrayPods deletes the unbound pods labelled for the class that the class does not
// control, as a ReplicaSet deletes (or adopts) pods that match its selector: a pool never
// adopts one, since it cannot know what the pod ran. Each is read again from the API server
// first, and deleted with a UID and resourceVersion precondition, so a pod bound or
// adopted meanwhile is left alone.
func (r *AgentSandboxReconciler) deleteStrayPods(ctx context.Context, st *poolStep) error {
	var errs []error
	for _, p := range st.pods.stray {
		errs = append(errs, deleteStrayPod(ctx, r.Client, r.apiReader, p.Namespace, p.Name, st.sb))
	}
	return errors.Join(errs...)
}

// deleteStrayPod deletes a pod labelled for a class, not bound to a session, that is
// controlled by neither that class (sb; nil when the class is gone) nor anything else of
// hyperpool that still exists.
func deleteStrayPod(ctx context.Context, c client.Writer, apiReader client.Reader, namespace, name string, sb *agentsv1alpha1.AgentSandbox) error {
	fresh := &corev1.Pod{}
	if err := apiReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, fresh); err != nil {
		return client.IgnoreNotFound(err)
	}
	_, session := sandboxAndSession(fresh)
	if session != "" || !fresh.DeletionTimestamp.IsZero() || (sb != nil && metav1.IsControlledBy(fresh, sb)) {
		return nil
	}
	// A foreign controller reference does not save it: the label is hyperpool's (only the
	// manager may set it), and a tenant can add such a reference to a pod that lost its own.
	log.FromContext(ctx).Info("deleting a stray sandbox pod: labelled for the class, controlled by nothing that exists", "pod", name)
	err := c.Delete(ctx, fresh, client.Preconditions{UID: &fresh.UID, ResourceVersion: &fresh.ResourceVersion})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// deletePodsOfGoneClass deletes the unbound pods of a deleted class that the garbage
// collector will not: those an orphaning delete of the class left without an owner.
func (r *AgentSandboxReconciler) deletePodsOfGoneClass(ctx context.Context, key types.NamespacedName) error {
	list := &corev1.PodList{}
	if err := r.List(ctx, list, client.InNamespace(key.Namespace), client.MatchingFields{podWarmIndex: key.Name}); err != nil {
		return fmt.Errorf("listing pods of deleted AgentSandbox %s: %w", key.Name, err)
	}
	var errs []error
	for i := range list.Items {
		if p := &list.Items[i]; p.DeletionTimestamp.IsZero() && hyperpoolController(p) == nil {
			errs = append(errs, deleteStrayPod(ctx, r.Client, r.apiReader, p.Namespace, p.Name, nil))
		}
	}
	return errors.Join(errs...)
}

// replaceStuckWarmPods deletes warm pods that ended (a sandbox never exits on its own) or
// that did not become Ready before the pool's deadline; scaleWarmPool creates their
// replacements. The deadline doubles with each consecutive timeout, so this backs off.
func (r *AgentSandboxReconciler) replaceStuckWarmPods(ctx context.Context, st *poolStep) error {
	key := client.ObjectKeyFromObject(st.sb)
	deadline := r.readyDeadline(key)
	now := r.clock.Now()
	var errs []error
	sawReady := false
	// Many warm pods share a node: look each node up once per reconcile.
	goneNodes := map[string]bool{}
	for _, p := range st.liveWarm() {
		// A pod whose node is gone will never serve anyone, Ready or not: replace it now
		// rather than when the pod garbage collector gets to it.
		gone, seen := goneNodes[p.Spec.NodeName]
		if !seen {
			var err error
			if gone, err = nodeGone(ctx, r.Client, p.Spec.NodeName); err != nil {
				errs = append(errs, err)
				continue
			}
			goneNodes[p.Spec.NodeName] = gone
		}
		if gone {
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
	if strategy.Type == agentsv1alpha1.OnReplenishUpdateStrategy {
		return nil
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
	warm := st.liveWarm()
	have := len(warm) + len(st.pendingCreations)
	want := int(ptr.Deref(st.sb.Spec.Replicas, 1))
	over, err := r.quota.excessWarm(ctx, st.sb.Namespace)
	if err != nil {
		return err
	}
	// The excess is measured on the cache, which still shows the pods this pool deleted:
	// the share is taken from the same count, so a deletion in flight is not given twice.
	counted := len(st.pods.warm) + len(st.pendingCreations)
	if share := over.share(st.sb.Name, counted); share > 0 {
		want = min(want, counted-share)
		st.quotaBlocker = &blocker{Reason: agentsv1alpha1.ReasonQuotaLimited, Message: fmt.Sprintf(
			"warmSandboxes: the namespace holds %d warm sandboxes more than the %d allowed by %s; this pool gives up %d of them",
			over.excess, *over.quota.hard.WarmSandboxes, over.quota.describe(), share)}
	}

	hash := templateHash(st.sb)
	switch {
	case have < want && st.recipe != nil:
		if wait := r.replenishWait(st, warm, want); wait > 0 {
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
		for _, p := range warm[:have-want] {
			errs = append(errs, r.deleteWarmPod(ctx, st, p))
		}
		return errors.Join(errs...)
	}
	return nil
}

// replenishWait is how long the pool holds back replacing taken sandboxes: until
// spec.replenish.quietPeriod has passed since the last take, unless fewer than minReady
// warm sandboxes are Ready. Zero: create now.
func (r *AgentSandboxReconciler) replenishWait(st *poolStep, warm []*corev1.Pod, want int) time.Duration {
	spec := st.sb.Spec.Replenish
	if spec.QuietPeriod == nil || spec.QuietPeriod.Duration <= 0 || r.takes == nil {
		return 0
	}
	minReady := int(ptr.Deref(spec.MinReady, int32((want+1)/2)))
	if readyCount(warm) < minReady {
		return 0
	}
	since, taken := r.takes.since(client.ObjectKeyFromObject(st.sb))
	if !taken || since >= spec.QuietPeriod.Duration {
		return 0
	}
	return spec.QuietPeriod.Duration - since
}

func readyCount(pods []*corev1.Pod) int {
	n := 0
	for _, p := range pods {
		if podstate.Ready(p) {
			n++
		}
	}
	return n
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

// createWarmPods creates up to n warm pods, as many as the namespace's quota allows, in
// slow-start batches (1, 2, 4, ...) as the ReplicaSet controller does: when the API server
// refuses the first (a ResourceQuota, a policy), the pool does not fire hundreds of doomed
// requests.
func (r *AgentSandboxReconciler) createWarmPods(ctx context.Context, st *poolStep, n int) error {
	if terminating, err := namespaceTerminating(ctx, r.Client, st.sb.Namespace); err != nil || terminating {
		return err // a namespace being deleted refuses every pod: do not ask
	}
	grants, quotaBlk, err := r.quota.reservePods(ctx, st.sb.Namespace, classFootprint(st.sb), n, true)
	if err != nil {
		return err
	}
	st.quotaBlocker = quotaBlk
	key := client.ObjectKeyFromObject(st.sb)
	created := 0
	for batch := 1; created < len(grants); batch *= 2 {
		size := min(batch, len(grants)-created)
		errs := make([]error, size)
		var wg sync.WaitGroup
		for i := range size {
			grant := grants[created+i]
			wg.Go(func() { errs[i] = r.createWarmPod(ctx, st, key, grant) })
		}
		wg.Wait()
		created += size
		if err := errors.Join(errs...); err != nil {
			for _, g := range grants[created:] {
				g.release()
			}
			if slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, errNamespaceTerminating) }) {
				// The namespace is going away, and the pool with it: no more creations,
				// no retry. Its deletion events end the pool's reconciles.
				return nil
			}
			return err
		}
	}
	return nil
}

// namespaceTerminating says, from the cache, whether namespace ns is being deleted.
func namespaceTerminating(ctx context.Context, c client.Reader, ns string) (bool, error) {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := c.Get(ctx, types.NamespacedName{Name: ns}, obj); err != nil {
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}
	return !obj.DeletionTimestamp.IsZero(), nil
}

// errNamespaceTerminating stops a round of creations in a namespace being deleted: every
// further pod would be refused.
var errNamespaceTerminating = errors.New("namespace is terminating")

func (r *AgentSandboxReconciler) createWarmPod(ctx context.Context, st *poolStep, key types.NamespacedName, grant *podGrant) error {
	pod := st.recipe.build()
	if err := ctrl.SetControllerReference(st.sb, pod, r.Scheme()); err != nil {
		grant.release()
		return err
	}
	if err := r.Create(ctx, pod); err != nil {
		grant.release()
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return errNamespaceTerminating
		}
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			st.forbidden = err.Error()
		}
		return fmt.Errorf("creating a warm pod for AgentSandbox %s: %w", st.sb.Name, err)
	}
	grant.confirm(pod.Name)
	r.expectations.Created(key, pod.Name)
	r.demand.podCreated(st.sb, pod.Name)
	podCreations.WithLabelValues(st.sb.Namespace, st.sb.Name, string(agentsv1alpha1.StartWarm)).Inc()
	return nil
}

// deleteWarmPod deletes a warm pod unless a session bound it meanwhile: the resourceVersion
// precondition makes the delete lose any race with a bind.
func (r *AgentSandboxReconciler) deleteWarmPod(ctx context.Context, st *poolStep, p *corev1.Pod) error {
	err := r.Delete(ctx, p, client.Preconditions{UID: &p.UID, ResourceVersion: &p.ResourceVersion})
	switch {
	case err == nil:
		r.expectations.Deleted(client.ObjectKeyFromObject(st.sb), p.Name)
		st.pendingDeletions[p.Name] = true
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil // gone, or changed (bound) since the cache saw it: nothing to do
	default:
		return fmt.Errorf("deleting warm pod %s: %w", p.Name, err)
	}
}

// writeStatus computes the pool's status and writes it once, only when it changed.
func (r *AgentSandboxReconciler) writeStatus(ctx context.Context, st *poolStep) error {
	sb := st.sb
	status := sb.Status.DeepCopy()
	status.ObservedGeneration = sb.Generation
	status.TemplateHash = templateHash(sb)
	status.Selector = fmt.Sprintf("%s=%s,!%s", agentsv1alpha1.SandboxLabel, sb.Name, agentsv1alpha1.SessionLabel)

	warm := st.liveWarm() // after this reconcile's deletions, so not always replenishWait's
	ready := readyCount(warm)
	status.Replicas = int32(len(warm))
	status.ReadyReplicas = int32(ready)
	status.ActiveSessions = int32(len(st.pods.bound))

	shape := shapeOf(sb)
	per := shape.footprint
	total := agentsv1alpha1.Footprint{}
	for _, p := range append(warm, st.pods.bound...) {
		total = uvm.AddFootprint(total, sandboxPodFootprint(p, shape))
	}
	status.Footprint = &agentsv1alpha1.PoolFootprint{PerSandbox: per, Total: total}
	warmSandboxes.WithLabelValues(sb.Namespace, sb.Name).Set(float64(ready))
	vmMemoryBytes.WithLabelValues(sb.Namespace, sb.Name).Set(float64(total.Memory.Value()))

	want := ptr.Deref(sb.Spec.Replicas, 1)
	setPoolConditions(status, st, int32(ready), want)
	setAutoscalingStatus(status, st)
	idleVMMemory.set(client.ObjectKeyFromObject(sb), float64(warmMemory(warm, shape)))
	announceVMSize := r.setVMSizeCondition(sb, status)

	if equalSandboxStatus(&sb.Status, status) {
		return nil
	}
	key := client.ObjectKeyFromObject(sb)
	if onlyCountsDiffer(&sb.Status, status) {
		if last, ok := r.lastStatusWrite.Load(key); ok {
			if wait := poolCountsInterval - r.clock.Since(last.(time.Time)); wait > 0 {
				st.requeueIn(wait) // written then, with the counts of that moment
				return nil
			}
		}
	}
	patch := client.MergeFrom(sb.DeepCopy())
	sb.Status = *status
	if err := r.Status().Patch(ctx, sb, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.lastStatusWrite.Store(key, r.clock.Now())
	announceVMSize()
	return nil
}

// onlyCountsDiffer says whether two statuses differ only in counts and condition messages:
// same generation, template, selector, and conditions of the same status and reason, but
// for the Ready condition moving between PoolReady and PoolFilling (countsOnlyReady).
func onlyCountsDiffer(a, b *agentsv1alpha1.AgentSandboxStatus) bool {
	return a.ObservedGeneration == b.ObservedGeneration && a.Selector == b.Selector &&
		a.TemplateHash == b.TemplateHash &&
		slices.EqualFunc(a.Conditions, b.Conditions, func(x, y metav1.Condition) bool {
			if x.Type != y.Type || x.ObservedGeneration != y.ObservedGeneration {
				return false
			}
			if x.Status == y.Status && x.Reason == y.Reason {
				return true
			}
			return x.Type == agentsv1alpha1.SandboxReady && countsOnlyReady(x) && countsOnlyReady(y)
		})
}

// countsOnlyReady: a Ready condition that says no more than the counts do. Every take
// turns a full pool's Ready from PoolReady to PoolFilling and its refill turns it back, so
// writing those flips at once cost about two status writes per bind (docs/performance.md,
// "Bind cost at its floor"); they are written with the counts, at most once per
// poolCountsInterval. Any other reason (PodsNotReady, QuotaLimited, RuntimeClassNotFound...)
// is a state a user must see at once.
func countsOnlyReady(c metav1.Condition) bool {
	return (c.Status == metav1.ConditionTrue && c.Reason == agentsv1alpha1.ReasonPoolReady) ||
		(c.Status == metav1.ConditionFalse && c.Reason == agentsv1alpha1.ReasonPoolFilling)
}

func setPoolConditions(status *agentsv1alpha1.AgentSandboxStatus, st *poolStep, ready, want int32) {
	gen := st.sb.Generation
	degraded := metav1.Condition{Type: agentsv1alpha1.SandboxDegraded, Status: metav1.ConditionFalse,
		Reason: agentsv1alpha1.ReasonAsExpected, Message: "nothing keeps the pool from its target", ObservedGeneration: gen}
	switch {
	case st.blocker != nil:
		degraded.Status, degraded.Reason, degraded.Message = metav1.ConditionTrue, st.blocker.Reason, st.blocker.Message
	case st.quotaBlocker != nil:
		degraded.Status, degraded.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonQuotaLimited
		degraded.Message = st.quotaBlocker.Message + "; raise the quota or lower spec.replicas"
	case st.forbidden != "":
		degraded.Status, degraded.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonPodCreateForbidden
		degraded.Message = fmt.Sprintf("the API server refused a warm pod: %s; raise the limit that refuses it (a ResourceQuota, a policy) or lower spec.replicas", st.forbidden)
	case st.notReady > 0:
		degraded.Status, degraded.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonPodsNotReady
		degraded.Message = fmt.Sprintf("%d warm pod(s) did not become Ready in time and were replaced; check the image (pull time, Windows build %d) and the pods' events",
			st.notReady, st.sb.Spec.Windows.ImageBuild)
	default:
		if old := meta.FindStatusCondition(status.Conditions, agentsv1alpha1.SandboxDegraded); old != nil &&
			old.Reason == agentsv1alpha1.ReasonPodsNotReady && ready < want {
			degraded = *old // keep saying so until the pool recovers
		}
	}
	meta.SetStatusCondition(&status.Conditions, degraded)

	readyCond := metav1.Condition{Type: agentsv1alpha1.SandboxReady, Status: metav1.ConditionTrue,
		Reason: agentsv1alpha1.ReasonPoolReady, Message: fmt.Sprintf("%d of %d warm sandboxes Ready", ready, want), ObservedGeneration: gen}
	if ready < want {
		readyCond.Status, readyCond.Reason = metav1.ConditionFalse, agentsv1alpha1.ReasonPoolFilling
		if degraded.Status == metav1.ConditionTrue {
			readyCond.Reason = degraded.Reason
		}
		if st.replenishHeld {
			readyCond.Message += fmt.Sprintf("; taken sandboxes are replaced once sessions have taken none for %s (spec.replenish.quietPeriod)",
				st.sb.Spec.Replenish.QuietPeriod.Duration)
		}
	}
	meta.SetStatusCondition(&status.Conditions, readyCond)
}

func equalSandboxStatus(a, b *agentsv1alpha1.AgentSandboxStatus) bool {
	return a.ObservedGeneration == b.ObservedGeneration && a.Replicas == b.Replicas &&
		a.ReadyReplicas == b.ReadyReplicas && a.ActiveSessions == b.ActiveSessions &&
		a.Selector == b.Selector && a.TemplateHash == b.TemplateHash &&
		equalPoolFootprint(a.Footprint, b.Footprint) && equalConditions(a.Conditions, b.Conditions) &&
		equalAutoscalingStatus(a.Autoscaling, b.Autoscaling)
}

func equalPoolFootprint(a, b *agentsv1alpha1.PoolFootprint) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equalFootprint(a.PerSandbox, b.PerSandbox) && equalFootprint(a.Total, b.Total)
}

func equalFootprint(a, b agentsv1alpha1.Footprint) bool {
	return a.VCPUs == b.VCPUs && a.Memory.Cmp(b.Memory) == 0
}

// equalConditions compares conditions ignoring transition times, which SetStatusCondition
// keeps when nothing else changed.
func equalConditions(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason &&
			x.Message == y.Message && x.ObservedGeneration == y.ObservedGeneration
	})
}

func (r *AgentSandboxReconciler) forget(key types.NamespacedName) {
	r.expectations.Forget(key)
	r.streakMu.Lock()
	delete(r.notReadyStreak, key)
	r.streakMu.Unlock()
	r.lastStatusWrite.Delete(key)
	r.takes.forget(key)
	r.forgetPoolMeasures(key)
	forgetSandboxSeries(key)
}

// SetupWithManager registers the pool controller and its watches.
func (r *AgentSandboxReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentsandbox").
		For(&agentsv1alpha1.AgentSandbox{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&corev1.Pod{}, poolPodHandler()).
		// A RuntimeClass or a Windows node appearing or going can unblock or block any pool.
		Watches(&nodev1.RuntimeClass{}, handler.EnqueueRequestsFromMapFunc(r.allSandboxes)).
		WatchesMetadata(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.nodeChanged),
			builder.WithPredicates(windowsBuildChanged())).
		// The node agents' measurements of the classes' VM sizes.
		WatchesMetadata(&corev1.Node{}, r.vmSizes.nodeHandler()).
		// A quota raised or lowered lets pools grow or trims them.
		Watches(&agentsv1alpha1.AgentQuota{}, handler.EnqueueRequestsFromMapFunc(r.sandboxesInNamespace)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.config.SandboxWorkers}).
		Complete(observed(r.config, "agentsandbox", r))
}

// poolPodHandler wakes a pod's pool: at once for the pool's own warm pods (and for a warm
// pod being bound, which the pool replaces), and at most once per poolCountsInterval for
// pods bound to sessions. Those change only the pool's session count and footprint, which
// it writes no more often than that anyway; a reconcile per cold start, each listing the
// class's bound pods, would grow with the number of sessions (docs/performance.md). A
// bound pod's status updates do not wake the pool at all.
func poolPodHandler() handler.EventHandler {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	bound := func(o client.Object) bool { _, session := sandboxAndSession(o); return session != "" }
	wake := func(q queue, o client.Object, atOnce bool) {
		name, _ := sandboxAndSession(o)
		if name == "" {
			return
		}
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}
		if atOnce {
			q.Add(req)
		} else {
			q.AddAfter(req, poolCountsInterval)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q queue) { wake(q, e.Object, !bound(e.Object)) },
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q queue) { wake(q, e.Object, !bound(e.Object)) },
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q queue) {
			switch {
			case !bound(e.ObjectOld): // a warm pod changed, or was just bound
				wake(q, e.ObjectOld, true)
			case e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero():
				wake(q, e.ObjectNew, false) // a bound pod is going
			}
		},
	}
}

// nodeChanged: a Windows node came, went or changed build. The remembered builds are marked
// stale before any pool is woken to look at them.
func (r *AgentSandboxReconciler) nodeChanged(ctx context.Context, _ client.Object) []reconcile.Request {
	r.builds.changed()
	return r.sandboxes(ctx)
}

func (r *AgentSandboxReconciler) allSandboxes(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.sandboxes(ctx)
}

func (r *AgentSandboxReconciler) sandboxesInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	return r.sandboxes(ctx, client.InNamespace(o.GetNamespace()))
}

func (r *AgentSandboxReconciler) sandboxes(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	list := &agentsv1alpha1.AgentSandboxList{}
	if err := r.List(ctx, list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		log.FromContext(ctx).Error(err, "listing AgentSandboxes to re-check")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// windowsBuildChanged passes node creations, deletions and changes of the labels that decide
// which pools a node can serve; heartbeats and status updates, the bulk of node events,
// do not pass.
func windowsBuildChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()
			return o[windows.BuildLabel] != n[windows.BuildLabel] || o[osLabel] != n[osLabel]
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}
