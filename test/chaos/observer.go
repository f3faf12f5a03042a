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
	PodTwoSessions      = "pod bound to two sessions"
	SessionTwoPods      = "session holding two pods"
	SessionPodChanged   = "session's status.podName changed"
	BadSessionState     = "session state inconsistent"
	QuotaExceeded       = "active sessions over the quota"
	QuotaStatusOver     = "AgentQuota status.used over hard"
	PoolOverTarget      = "warm pool over its target"
	PoolOverCreated     = "pool created more pods than needed"
	PoolNotRecovered    = "pool not back at target in time"
	SessionUnsettled    = "session neither Ready, Queued nor ended with a reason"
	OrphanPod           = "pod left after its session was deleted"
	PoolNotAtTargetEnd  = "pool not at target at the end"
	PodNameShared       = "two live sessions show the same status.podName"
	SessionLate         = "session not ended within its deadline plus the liveness bound"
	SessionNotExpired   = "session ended other than by its max lifetime"
	SuspicionUnresolved = "count over a limit not resolved against a List"
	PoolBookDrift       = "a manager's pool book differed from its cache"
)

// Invariants are all the violation kinds, in the order a report lists them: every run
// checks each, and its result file names them, so a table shows the ones with none.
var Invariants = []string{
	PodTwoSessions, SessionTwoPods, SessionPodChanged, PodNameShared, BadSessionState,
	SessionNotExpired, SessionLate, SessionUnsettled,
	QuotaExceeded, QuotaStatusOver, PoolOverTarget, PoolOverCreated, PoolNotRecovered, PoolNotAtTargetEnd,
	OrphanPod, SuspicionUnresolved, PoolBookDrift,
}

// livenessBound is how long after its true deadline (sessionDeadline: the stored precise
// bind plus the max lifetime) a session may still be seen unended. A leader kill costs a
// Lease duration (4 s) plus the new leader's cache sync, and a kube-apiserver restart
// stops the watch for a few seconds; TestChaosShort shares 2 cores with the rest of
// `make test`, where the queue behind a fault drains slowly. 45 s covers all of these
// together with room to spare; a session the manager forgot (never expired) breaks it,
// and the run prints the longest lag it saw.
const livenessBound = 45 * time.Second

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
	// pending are the suspicions not resolved yet, oldest first (see suspect); wake tells
	// the confirmer there are some.
	pending     []suspicion
	wake        chan struct{}
	resolved    int
	unconfirmed map[string]int
	// podHolder maps each status.podName shown by a live (not ended, not deleted) session
	// to that session.
	podHolder map[string]string
	// maxEndLag is the longest time seen from a session's true deadline to its end.
	maxEndLag time.Duration
	// now is the clock (a fixed one in the unit tests).
	now func() time.Time

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
	// holds is the podName this session holds in podHolder; shared is set once it was
	// reported showing another live session's pod.
	holds  string
	shared bool
	// deadline is the session's true deadline (sessionDeadline), once bound; late is set
	// once reported past it.
	deadline time.Time
	late     bool
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
		wake: make(chan struct{}, 1), unconfirmed: map[string]int{}, podHolder: map[string]string{}, now: time.Now,
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
	if d := sessionDeadline(s); !d.IsZero() {
		st.deadline = d
	}
	if s.Status.Phase.IsFinished() {
		st.reason = s.Status.EndReason
		if !wasFinished {
			o.checkEnd(s, st)
		}
	}
	o.checkPodNameUnique(s.Name, st, !deleted && !s.Status.Phase.IsFinished(), s.Status.PodName)
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

	counted := countsAgainstQuota(s, deleted)
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
		o.suspect(QuotaExceeded, s.ResourceVersion)
	} else {
		o.peakActive = max(o.peakActive, o.active)
	}
}

// checkEnd checks a session seen ended for the first time: by its max lifetime (nothing
// in the chaos test deletes pods or idles sessions, so any other end is a fault the test
// must not excuse), and no later than livenessBound after its deadline. The lock must be
// held.
func (o *observer) checkEnd(s *agentsv1alpha1.AgentSession, st *sessionState) {
	if s.Status.EndReason != agentsv1alpha1.ReasonMaxLifetime && len(o.unusualEnds) < maxViolationExamples {
		o.unusualEnds = append(o.unusualEnds, o.describeEnd(s))
	}
	o.check(s.Status.EndReason == agentsv1alpha1.ReasonMaxLifetime, SessionNotExpired, "%s", o.describeEnd(s))
	if st.deadline.IsZero() {
		return // never bound: no deadline; the settle timeout bounds it
	}
	lag := o.now().Sub(st.deadline)
	o.maxEndLag = max(o.maxEndLag, lag)
	o.checkNotLate(s.Name, st, lag, "ended")
}

// sessionDeadline is when a bound session must end: its bind as the manager stored it to
// the microsecond (status.preciseBoundTime) plus the max lifetime it asked for. Never the
// whole-second status.expiryTime: rounded up twice, it hid up to 2 s of lag. A session
// that asks for no max lifetime gets its class's, which the manager's
// status.preciseExpiryTime carries. Without a precise bind (a manager older than the
// field) the whole-second boundTime, rounded down, counts: never later than the bind. Zero
// until the session is bound.
func sessionDeadline(s *agentsv1alpha1.AgentSession) time.Time {
	st := &s.Status
	var bound time.Time
	switch {
	case st.PreciseBoundTime != nil:
		bound = st.PreciseBoundTime.Time
	case st.BoundTime != nil:
		bound = st.BoundTime.Truncate(time.Second)
	}
	switch {
	case bound.IsZero():
		return time.Time{}
	case s.Spec.MaxLifetime != nil:
		return bound.Add(s.Spec.MaxLifetime.Duration)
	case st.PreciseExpiryTime != nil:
		return st.PreciseExpiryTime.Time
	case st.ExpiryTime != nil:
		return st.ExpiryTime.Time
	}
	return time.Time{}
}

// checkNotLate reports a session seen unended, or ended, lag after its deadline, once.
// The lock must be held.
func (o *observer) checkNotLate(name string, st *sessionState, lag time.Duration, what string) {
	o.checks++
	if lag > livenessBound && !st.late {
		st.late = true
		o.violate(SessionLate, "session %s %s %s after its deadline %s (bound %s)", name, what,
			lag.Round(time.Millisecond), st.deadline.UTC().Format(time.RFC3339Nano), livenessBound)
	}
}

// checkLiveness checks, at the end of the run, that no session among names is still
// unended livenessBound after its deadline.
func (o *observer) checkLiveness(names []string) {
	o.Lock()
	defer o.Unlock()
	now := o.now()
	for _, n := range names {
		if st := o.sessions[n]; st != nil && !st.phase.IsFinished() && !st.deadline.IsZero() {
			o.checkNotLate(n, st, now.Sub(st.deadline), "still "+string(st.phase))
		}
	}
}

// checkPodNameUnique keeps podHolder up to date with session name's status.podName and
// checks that no other live session shows the same pod. The lock must be held.
func (o *observer) checkPodNameUnique(name string, st *sessionState, live bool, podName string) {
	if st.holds != "" && (!live || st.holds != podName) {
		if o.podHolder[st.holds] == name {
			delete(o.podHolder, st.holds)
		}
		st.holds = ""
	}
	if !live || podName == "" {
		return
	}
	o.checks++
	other, taken := o.podHolder[podName]
	switch {
	case !taken:
		o.podHolder[podName], st.holds = name, podName
	case other != name && !st.shared:
		st.shared = true
		o.violate(PodNameShared, "sessions %s and %s both show pod %s while neither has ended", other, name, podName)
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
		o.suspect(PoolOverTarget, p.ResourceVersion)
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

// checkOverCreation checks that the pool created no more pods than its target plus one
// replacement per warm bind. There is no allowance for pods the pool deleted itself: in this
// test nothing else deletes an unbound pod, so a pool that deletes one had created it
// beyond what it needed.
func (o *observer) checkOverCreation() {
	o.Lock()
	defer o.Unlock()
	allowed := o.poolTarget + o.warmBinds
	o.check(o.poolCreated <= allowed, PoolOverCreated,
		"the pool created %d pods, needed at most %d (target %d + %d warm binds); it deleted %d unbound",
		o.poolCreated, allowed, o.poolTarget, o.warmBinds, o.warmReplaced)
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

// recordUnsettled reports that the sessions of names had not all ended within timeout,
// with a few of those left.
func (o *observer) recordUnsettled(names []string, timeout time.Duration) {
	o.Lock()
	defer o.Unlock()
	left := o.unsettledLocked(names)
	examples := make([]string, 0, maxViolationExamples)
	for _, n := range sortedKeys(left) {
		if len(examples) == maxViolationExamples {
			break
		}
		examples = append(examples, n+" "+left[n])
	}
	o.check(len(left) == 0, SessionUnsettled, "%d sessions not ended within %s, e.g. %s", len(left), timeout, strings.Join(examples, ", "))
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
	suspicionsResolved                             int
	maxEndLag                                      time.Duration
}

func (o *observer) figures() figures {
	o.Lock()
	defer o.Unlock()
	f := figures{checks: o.checks, counts: map[string]int{}, examples: map[string][]string{},
		poolCreated: o.poolCreated, warmBinds: o.warmBinds, warmReplaced: o.warmReplaced, coldPods: o.coldCreated,
		peakActive: o.peakActive, peakWarm: o.peakWarm, outcomes: map[string]int{}, unusualEnds: append([]string(nil), o.unusualEnds...), unconfirmed: map[string]int{},
		suspicionsResolved: o.resolved, maxEndLag: o.maxEndLag}
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
