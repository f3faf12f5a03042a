//go:build !windows

package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// maxViolationExamples bounds how many violations of one kind are described in full; all
// are counted.
const maxViolationExamples = 5

// Violation kinds: each names an invariant the chaos test checks.
const (
	PodTwoSessions     = "pod bound to two sessions"
	SessionTwoPods     = "session holding two pods"
	SessionPodChanged  = "session's status.podName changed"
	BadSessionState    = "session state inconsistent"
	QuotaExceeded      = "active sessions over the quota"
	QuotaStatusOver    = "AgentQuota status.used over hard"
	PoolOverTarget     = "warm pool over its target"
	PoolOverCreated    = "pool created more pods than needed"
	PoolNotRecovered   = "pool not back at target in time"
	SessionUnsettled   = "session neither Ready, Queued nor ended with a reason"
	OrphanPod          = "pod left after its session was deleted"
	PoolNotAtTargetEnd = "pool not at target at the end"
)

// observer watches one namespace (sessions, pods, the quota) and checks the invariants on
// every event. What it sees is each resource's history in order, as any client would; the
// checks hold on every prefix of it.
type observer struct {
	ns, pool   string
	poolTarget int
	quota      int

	testbed.Notifier // guards what follows; every watch event is a change
	sessions         map[string]*sessionState
	pods             map[types.UID]*podState
	// livePodsOf are the live (not terminating) pods labelled for each session.
	livePodsOf map[string]map[types.UID]bool
	active     int // sessions counted against the quota
	peakActive int
	liveWarm   int // live unbound pods of the pool, Ready or booting
	readyWarm  int // of those, Ready
	peakWarm   int
	// atTargetSince is when liveWarm last reached poolTarget, zero while below it.
	atTargetSince time.Time
	// atTargetStarts are the moments liveWarm reached poolTarget, in order.
	atTargetStarts []time.Time

	poolCreated  int // pods the pool created, ever seen
	warmBinds    int // pool pods that were bound to a session
	warmReplaced int // pool pods deleted while still unbound (replaced by the pool)
	coldCreated  int

	// unusualEnds describe sessions that ended other than by their max lifetime, when
	// they ended and what the watch saw of their pod (nothing here deletes pods).
	unusualEnds []string
	// podGoneAt is when the watch saw each pod (by name) terminating or gone.
	podGoneAt map[string]time.Time

	// Counts across many objects (sessions the quota counts, live warm pods) can be
	// wrong for a moment while an informer relists, after kube-apiserver restarted: the
	// relist updates objects one by one. Such a count over its limit is a suspicion,
	// confirmed or dismissed by confirm against one consistent List.
	suspicions  chan string
	unconfirmed map[string]int

	checks     int64
	violations map[string][]string // kind -> descriptions (first maxViolationExamples)
	counts     map[string]int
	started    time.Time
}

type sessionState struct {
	podNames []string // distinct non-empty status.podName values
	phase    agentsv1alpha1.SessionPhase
	reason   string // endReason, once finished
	counted  bool   // counted against the quota
	deleted  bool
	badState bool // reported once
}

type podState struct {
	name      string
	pool      bool     // created by the pool (generateName "<pool>-"), not for a session
	sessions  []string // distinct session labels seen
	owners    []string // distinct AgentSession controller owners seen
	session   string   // current session label
	live      bool
	ready     bool
	reported  bool // as bound to two sessions
	goneCount bool // counted as replaced or ended
}

func newObserver(ns, pool string, poolTarget, quota int) *observer {
	return &observer{ns: ns, pool: pool, poolTarget: poolTarget, quota: quota,
		sessions: map[string]*sessionState{}, pods: map[types.UID]*podState{},
		suspicions: make(chan string, 8), unconfirmed: map[string]int{},
		livePodsOf: map[string]map[types.UID]bool{}, podGoneAt: map[string]time.Time{}, violations: map[string][]string{}, counts: map[string]int{},
		started: time.Now()}
}

// start runs the watches until ctx ends and returns once they have synced.
func (o *observer) start(ctx context.Context, cfg *rest.Config, c client.Client) error {
	ca, err := cache.New(cfg, cache.Options{Scheme: c.Scheme(), DefaultNamespaces: map[string]cache.Config{o.ns: {}},
		DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return fmt.Errorf("observer cache: %w", err)
	}
	for _, obj := range []client.Object{&agentsv1alpha1.AgentSession{}, &corev1.Pod{}, &agentsv1alpha1.AgentQuota{}} {
		inf, err := ca.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("observer informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(o.handler()); err != nil {
			return fmt.Errorf("observer handler for %T: %w", obj, err)
		}
	}
	go func() { _ = ca.Start(ctx) }()
	go o.confirmSuspicions(ctx, c)
	if !ca.WaitForCacheSync(ctx) {
		return fmt.Errorf("observer watches in %s did not sync", o.ns)
	}
	return nil
}

func (o *observer) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { o.observe(obj, false) },
		UpdateFunc: func(_, obj any) { o.observe(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			o.observe(obj, true)
		},
	}
}

func (o *observer) observe(obj any, deleted bool) {
	o.Lock()
	defer o.Unlock()
	switch x := obj.(type) {
	case *agentsv1alpha1.AgentSession:
		o.observeSession(x, deleted)
	case *corev1.Pod:
		o.observePod(x, deleted)
	case *agentsv1alpha1.AgentQuota:
		o.observeQuota(x)
	default:
		return
	}
	o.Changed()
}

// violate records a broken invariant. The lock must be held.
func (o *observer) violate(kind, format string, args ...any) {
	o.counts[kind]++
	if len(o.violations[kind]) < maxViolationExamples {
		at := time.Since(o.started).Round(time.Millisecond)
		o.violations[kind] = append(o.violations[kind], fmt.Sprintf("t=%s %s", at, fmt.Sprintf(format, args...)))
	}
}

// suspect queues a count over its limit for confirmation. The lock must be held. A
// suspicion already queued covers this one.
func (o *observer) suspect(kind string) {
	select {
	case o.suspicions <- kind:
	default:
		o.unconfirmed[kind]++
	}
}

// confirmSuspicions checks each suspicion against one List from the API server (a
// consistent snapshot): over the limit there, it is a violation; otherwise it was the
// watch's passing view, counted apart. A real overshoot shorter than the List's round trip
// can be missed; a false one is never reported.
func (o *observer) confirmSuspicions(ctx context.Context, c client.Client) {
	for {
		var kind string
		select {
		case <-ctx.Done():
			return
		case kind = <-o.suspicions:
		}
		var n, limit int
		var what string
		switch kind {
		case QuotaExceeded:
			list := &agentsv1alpha1.AgentSessionList{}
			if err := c.List(ctx, list, client.InNamespace(o.ns)); err != nil {
				continue // kube-apiserver away: a later event raises it again
			}
			for i := range list.Items {
				s := &list.Items[i]
				if !s.Status.Phase.IsFinished() && (s.Status.PodName != "" || meta.IsStatusConditionTrue(s.Status.Conditions, agentsv1alpha1.QuotaReserved)) {
					n++
				}
			}
			limit, what = o.quota, "active sessions (admitted or bound, not ended)"
		case PoolOverTarget:
			list := &corev1.PodList{}
			if err := c.List(ctx, list, client.InNamespace(o.ns)); err != nil {
				continue
			}
			for i := range list.Items {
				p := &list.Items[i]
				if p.GenerateName == o.pool+"-" && p.Labels[agentsv1alpha1.SessionLabel] == "" && p.DeletionTimestamp.IsZero() {
					n++
				}
			}
			limit, what = o.poolTarget, "live warm pods of the pool"
		}
		o.Lock()
		if n > limit {
			o.violate(kind, "%d %s > %d, in one consistent List", n, what, limit)
			if kind == QuotaExceeded {
				o.peakActive = max(o.peakActive, n)
			} else {
				o.peakWarm = max(o.peakWarm, n)
			}
		} else {
			o.unconfirmed[kind]++
		}
		o.Unlock()
	}
}

func (o *observer) check(ok bool, kind, format string, args ...any) {
	o.checks++
	if !ok {
		o.violate(kind, format, args...)
	}
}

func (o *observer) observeSession(s *agentsv1alpha1.AgentSession, deleted bool) {
	st := o.sessions[s.Name]
	if st == nil {
		st = &sessionState{}
		o.sessions[s.Name] = st
	}
	wasFinished := st.phase.IsFinished()
	st.phase, st.deleted = s.Status.Phase, deleted
	if s.Status.Phase.IsFinished() {
		st.reason = s.Status.EndReason
		if !wasFinished && st.reason != agentsv1alpha1.ReasonMaxLifetime && len(o.unusualEnds) < maxViolationExamples {
			o.unusualEnds = append(o.unusualEnds, o.describeEnd(s))
		}
	}
	if p := s.Status.PodName; p != "" && !slices.Contains(st.podNames, p) {
		st.podNames = append(st.podNames, p)
		o.check(len(st.podNames) == 1, SessionPodChanged, "session %s: status.podName was %v", s.Name, st.podNames)
	}
	if problem := sessionStateProblem(s); problem != "" {
		o.checks++
		if !st.badState {
			st.badState = true
			o.violate(BadSessionState, "session %s: %s", s.Name, problem)
		}
	} else {
		o.checks++
	}

	// The quota counts a session from its admission (or bind) until it ends.
	counted := !deleted && !s.Status.Phase.IsFinished() &&
		(s.Status.PodName != "" || meta.IsStatusConditionTrue(s.Status.Conditions, agentsv1alpha1.QuotaReserved))
	if counted != st.counted {
		st.counted = counted
		if counted {
			o.active++
		} else {
			o.active--
		}
	}
	o.checks++
	if o.active > o.quota {
		o.suspect(QuotaExceeded)
	} else {
		o.peakActive = max(o.peakActive, o.active)
	}
}

// sessionStateProblem says what is inconsistent in one session's status, or "".
func sessionStateProblem(s *agentsv1alpha1.AgentSession) string {
	ready := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition)
	switch phase := s.Status.Phase; {
	case phase.IsFinished():
		if s.Status.EndReason == "" {
			return fmt.Sprintf("phase %s without endReason", phase)
		}
		if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != s.Status.EndReason {
			return fmt.Sprintf("phase %s endReason %s but Ready condition %s", phase, s.Status.EndReason, describeCondition(ready))
		}
	case phase == agentsv1alpha1.SessionReady:
		if s.Status.PodName == "" || ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Sprintf("phase Ready with pod %q and Ready condition %s", s.Status.PodName, describeCondition(ready))
		}
	case phase == agentsv1alpha1.SessionQueued:
		q := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
		if q == nil || q.Status != metav1.ConditionFalse || q.Reason == "" || s.Status.PodName != "" {
			return fmt.Sprintf("phase Queued with pod %q and QuotaReserved condition %s", s.Status.PodName, describeCondition(q))
		}
	}
	return ""
}

// describeEnd says when a session ended and what the watch saw of its pod. The lock must
// be held.
func (o *observer) describeEnd(s *agentsv1alpha1.AgentSession) string {
	pod := "no pod"
	if name := s.Status.PodName; name != "" {
		pod = "pod " + name + " never seen terminating"
		if at, ok := o.podGoneAt[name]; ok {
			pod = fmt.Sprintf("pod %s seen terminating or gone at t=%s", name, at.Sub(o.started).Round(time.Millisecond))
		}
	}
	ready := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition)
	msg := ""
	if ready != nil {
		msg = ready.Message
	}
	return fmt.Sprintf("session %s %s/%s seen at t=%s (%s): %s", s.Name, s.Status.Phase, s.Status.EndReason,
		time.Since(o.started).Round(time.Millisecond), pod, msg)
}

func describeCondition(c *metav1.Condition) string {
	if c == nil {
		return "missing"
	}
	return fmt.Sprintf("%s/%s", c.Status, c.Reason)
}

func (o *observer) observePod(p *corev1.Pod, deleted bool) {
	st := o.pods[p.UID]
	if st == nil {
		st = &podState{name: p.Name, pool: p.GenerateName == o.pool+"-"}
		o.pods[p.UID] = st
		if st.pool {
			o.poolCreated++
		} else if p.Labels[agentsv1alpha1.SessionLabel] != "" {
			o.coldCreated++
		}
	}
	wasWarm, wasReadyWarm := st.pool && st.live && st.session == "", st.pool && st.live && st.ready && st.session == ""
	oldSession, wasLive := st.session, st.live

	st.session = p.Labels[agentsv1alpha1.SessionLabel]
	st.live = !deleted && p.DeletionTimestamp.IsZero()
	if _, seen := o.podGoneAt[p.Name]; !st.live && !seen {
		o.podGoneAt[p.Name] = time.Now()
	}
	st.ready = podstate.Ready(p)
	if st.session != "" && !slices.Contains(st.sessions, st.session) {
		st.sessions = append(st.sessions, st.session)
		if st.pool {
			o.warmBinds++
		}
	}
	if owner := metav1.GetControllerOf(p); owner != nil && owner.Kind == "AgentSession" && !slices.Contains(st.owners, owner.Name) {
		st.owners = append(st.owners, owner.Name)
	}
	o.checks++
	if (len(st.sessions) > 1 || len(st.owners) > 1) && !st.reported {
		st.reported = true
		o.violate(PodTwoSessions, "pod %s: session labels %v, AgentSession owners %v", p.Name, st.sessions, st.owners)
	}
	// A pool pod gone (or going) while unbound was deleted by the controller: the pool
	// replaces it, legitimately.
	if st.pool && st.session == "" && !st.live && !st.goneCount {
		st.goneCount = true
		o.warmReplaced++
	}

	// Live pods per session.
	if wasLive && oldSession != "" {
		delete(o.livePodsOf[oldSession], p.UID)
	}
	if st.live && st.session != "" {
		set := o.livePodsOf[st.session]
		if set == nil {
			set = map[types.UID]bool{}
			o.livePodsOf[st.session] = set
		}
		set[p.UID] = true
		o.check(len(set) <= 1, SessionTwoPods, "session %s holds %d live pods at once (latest %s)", st.session, len(set), p.Name)
	}

	// The pool's warm pods.
	isWarm, isReadyWarm := st.pool && st.live && st.session == "", st.pool && st.live && st.ready && st.session == ""
	o.liveWarm += boolDelta(wasWarm, isWarm)
	o.readyWarm += boolDelta(wasReadyWarm, isReadyWarm)
	o.checks++
	if o.liveWarm > o.poolTarget {
		o.suspect(PoolOverTarget)
	} else {
		o.peakWarm = max(o.peakWarm, o.liveWarm)
	}
	switch {
	case o.liveWarm >= o.poolTarget && o.atTargetSince.IsZero():
		o.atTargetSince = time.Now()
		o.atTargetStarts = append(o.atTargetStarts, o.atTargetSince)
	case o.liveWarm < o.poolTarget:
		o.atTargetSince = time.Time{}
	}
}

func (o *observer) observeQuota(q *agentsv1alpha1.AgentQuota) {
	if q.Spec.Hard.Sessions == nil || q.Status.Used.Sessions == nil {
		return
	}
	o.check(*q.Status.Used.Sessions <= *q.Spec.Hard.Sessions, QuotaStatusOver, "AgentQuota %s: used.sessions %d > hard %d",
		q.Name, *q.Status.Used.Sessions, *q.Spec.Hard.Sessions)
}

func boolDelta(was, is bool) int {
	switch {
	case is && !was:
		return 1
	case was && !is:
		return -1
	}
	return 0
}

// poolAtTargetAfter returns when the pool was first at its target (live warm pods) at or
// after t: either it already was at t, or it got there later. ok is false if it has not.
func (o *observer) poolAtTargetAfter(t time.Time) (at time.Time, ok bool) {
	o.Lock()
	defer o.Unlock()
	return o.poolAtTargetAfterLocked(t)
}

func (o *observer) poolAtTargetAfterLocked(t time.Time) (at time.Time, ok bool) {
	if !o.atTargetSince.IsZero() && !o.atTargetSince.After(t) {
		return t, true
	}
	for _, s := range o.atTargetStarts {
		if !s.Before(t) {
			return s, true
		}
	}
	return time.Time{}, false
}

// unsettledLocked lists the sessions (of names) not finished yet, with their phases.
// The lock must be held.
func (o *observer) unsettledLocked(names []string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		s := o.sessions[n]
		switch {
		case s == nil:
			out[n] = "not seen"
		case !s.phase.IsFinished():
			out[n] = string(s.phase)
		}
	}
	return out
}

// phases counts the sessions seen by phase, for progress reports.
func (o *observer) phases() string {
	o.Lock()
	defer o.Unlock()
	counts := map[string]int{}
	for _, s := range o.sessions {
		counts[string(s.phase)]++
	}
	return joinOutcomes(counts) + fmt.Sprintf("; live warm pods %d (Ready %d)", o.liveWarm, o.readyWarm)
}

// figures are the observer's counts, taken together.
type figures struct {
	checks                                         int64
	counts                                         map[string]int
	examples                                       map[string][]string
	poolCreated, warmBinds, warmReplaced, coldPods int
	peakActive, peakWarm                           int
	outcomes                                       map[string]int // "Expired/MaxLifetime" -> n
	unconfirmed                                    map[string]int
	unusualEnds                                    []string
}

func (o *observer) figures() figures {
	o.Lock()
	defer o.Unlock()
	f := figures{checks: o.checks, counts: map[string]int{}, examples: map[string][]string{},
		poolCreated: o.poolCreated, warmBinds: o.warmBinds, warmReplaced: o.warmReplaced, coldPods: o.coldCreated,
		peakActive: o.peakActive, peakWarm: o.peakWarm, outcomes: map[string]int{}, unusualEnds: append([]string(nil), o.unusualEnds...), unconfirmed: map[string]int{}}
	for k, v := range o.unconfirmed {
		f.unconfirmed[k] = v
	}
	for k, v := range o.counts {
		f.counts[k] = v
	}
	for k, v := range o.violations {
		f.examples[k] = append([]string(nil), v...)
	}
	for _, s := range o.sessions {
		key := string(s.phase)
		if s.reason != "" {
			key += "/" + s.reason
		}
		f.outcomes[key]++
	}
	return f
}

// record adds a violation found outside the watch (the final checks).
func (o *observer) record(kind, format string, args ...any) {
	o.Lock()
	defer o.Unlock()
	o.violate(kind, format, args...)
}

// countCheck counts a check made outside the watch.
func (o *observer) countCheck(n int) {
	o.Lock()
	defer o.Unlock()
	o.checks += int64(n)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// joinOutcomes renders outcome counts as "Expired/MaxLifetime 990, Ready 10".
func joinOutcomes(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
