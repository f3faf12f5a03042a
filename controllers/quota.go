package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/expectations"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// quotaKeeper decides, per namespace, whether a session may start and whether a pod may be
// created, against the namespace's AgentQuota (or the manager's default quota).
//
// Decisions are serialised per namespace and remember what they granted until the cache
// shows it, so concurrent workers cannot together overshoot a limit while the cache lags
// (50 sessions created at once against a limit of 10 admit exactly 10).
type quotaKeeper struct {
	reader client.Reader
	// book counts the sandbox pods from pod events (setup shares the pool controllers');
	// without one, each measure lists the namespace's pods into a book of its own.
	book *poolbook.Book
	// defaultHard applies to namespaces without an AgentQuota that match defaultSelector;
	// nil means no limit.
	defaultHard     *agentsv1alpha1.QuotaLimits
	defaultSelector labels.Selector
	// defaultMaxQueued bounds the queue of a quota that sets no spec.maxQueued, and of the
	// default quota (Config.MaxQueuedSessions).
	defaultMaxQueued int32
	clock            clock.PassiveClock

	mu sync.Mutex
	// namespaces holds a ledger only while it holds grants: an empty one is dropped when it
	// is unlocked, and a deleted namespace's with it (forgetNamespace), so the map is
	// bounded by the live namespaces with decisions in flight, not by every one ever seen.
	namespaces map[string]*namespaceLedger
}

// namespaceLedger is what this manager granted in a namespace that its cache may not show.
type namespaceLedger struct {
	mu       sync.Mutex
	sessions map[types.UID]time.Time // admitted sessions
	// queued are the sessions told to wait, until the cache shows them Queued: the queue's
	// bound counts them before their status writes land.
	queued map[types.UID]bool
	pods   map[string]grantedPod // pods about to be, or just, created: by name or token
	// dropped: removed from quotaKeeper.namespaces; whoever locks it must take a fresh one.
	dropped bool
}

type grantedPod struct {
	footprint agentsv1alpha1.Footprint
	warm      bool
	at        time.Time
}

func newQuotaKeeper(reader client.Reader, cfg Config, clk clock.PassiveClock) *quotaKeeper {
	selector := cfg.DefaultQuotaNamespaces
	if selector == nil {
		selector = labels.Everything()
	}
	return &quotaKeeper{reader: reader, defaultHard: cfg.DefaultQuota, defaultSelector: selector,
		defaultMaxQueued: cfg.MaxQueuedSessions, clock: clk, namespaces: map[string]*namespaceLedger{}}
}

// lockLedger returns the namespace's ledger, locked. Release it with unlockLedger.
func (q *quotaKeeper) lockLedger(ns string) *namespaceLedger {
	for {
		q.mu.Lock()
		l, ok := q.namespaces[ns]
		if !ok {
			l = &namespaceLedger{sessions: map[types.UID]time.Time{}, queued: map[types.UID]bool{}, pods: map[string]grantedPod{}}
			q.namespaces[ns] = l
		}
		q.mu.Unlock()
		l.mu.Lock()
		if !l.dropped {
			return l
		}
		l.mu.Unlock() // dropped meanwhile: take the namespace's new one
	}
}

// unlockLedger unlocks a ledger from lockLedger, and drops it when it holds no grant: a
// ledger is then the same as none, and the next decision in the namespace starts a new one.
// Lock order: a ledger's, then the keeper's.
func (q *quotaKeeper) unlockLedger(ns string, l *namespaceLedger) {
	if len(l.sessions) == 0 && len(l.queued) == 0 && len(l.pods) == 0 {
		q.drop(ns, l)
	}
	l.mu.Unlock()
}

// drop removes l, locked by the caller, from the keeper.
func (q *quotaKeeper) drop(ns string, l *namespaceLedger) {
	q.mu.Lock()
	if q.namespaces[ns] == l {
		delete(q.namespaces, ns)
	}
	q.mu.Unlock()
	l.dropped = true
}

// forgetNamespace drops what the keeper holds for a deleted namespace: its grants can never
// show up in a cache, and no decision will be made there again to clear them.
func (q *quotaKeeper) forgetNamespace(ns string) {
	q.mu.Lock()
	l, ok := q.namespaces[ns]
	q.mu.Unlock()
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	q.drop(ns, l)
}

// trackedNamespaces is how many namespaces the keeper holds state for.
func (q *quotaKeeper) trackedNamespaces() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.namespaces)
}

// releaseSession gives back the session slot granted to s when it is parked again after its
// admission (its cold start refused by the quota's memory or cpu, or by a ResourceQuota):
// the grant would otherwise count as a used slot, and the session would never be listed as
// waiting, until the cache showed an admission that its status no longer says.
func (q *quotaKeeper) releaseSession(s *agentsv1alpha1.AgentSession) {
	q.mu.Lock()
	l, ok := q.namespaces[s.Namespace]
	q.mu.Unlock()
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dropped {
		delete(l.sessions, s.UID)
	}
}

// enforcedQuota is the quota in force in a namespace.
type enforcedQuota struct {
	// name is the AgentQuota's name, or "" for the manager's default.
	name string
	hard agentsv1alpha1.QuotaLimits
	// maxQueued is how many sessions may wait for a sessions slot.
	maxQueued int
}

func (e *enforcedQuota) describe() string {
	if e.name == "" {
		return "the manager's default quota"
	}
	return "AgentQuota " + e.name
}

// quotaFor returns the quota in force in ns, or nil if none. With several AgentQuotas the
// oldest is enforced (and the others say so in their conditions).
//
// It fails closed: when it cannot tell whether the default quota applies (the Namespace is
// not in the cache, or cannot be read), it returns an error, which the caller retries,
// never "no limit".
func (q *quotaKeeper) quotaFor(ctx context.Context, ns string) (*enforcedQuota, error) {
	list := &agentsv1alpha1.AgentQuotaList{}
	if err := q.reader.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing AgentQuotas in %s: %w", ns, err)
	}
	if len(list.Items) > 0 {
		oldest := slices.MinFunc(list.Items, olderFirst)
		maxQueued := int(q.defaultMaxQueued)
		if oldest.Spec.MaxQueued != nil {
			maxQueued = int(*oldest.Spec.MaxQueued)
		}
		return &enforcedQuota{name: oldest.Name, hard: oldest.Spec.Hard, maxQueued: maxQueued}, nil
	}
	if q.defaultHard == nil {
		return nil, nil
	}
	if !q.defaultSelector.Empty() {
		nsObj := &metav1.PartialObjectMetadata{}
		nsObj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := q.reader.Get(ctx, types.NamespacedName{Name: ns}, nsObj); err != nil {
			// Not found: the cache does not show the namespace yet (or any more). Whether
			// the default quota applies is unknown, so nothing is decided until it does.
			return nil, fmt.Errorf("reading namespace %s to apply the default quota: %w", ns, err)
		}
		if !q.defaultSelector.Matches(labels.Set(nsObj.Labels)) {
			return nil, nil
		}
	}
	return &enforcedQuota{hard: *q.defaultHard, maxQueued: int(q.defaultMaxQueued)}, nil
}

func olderFirst(a, b agentsv1alpha1.AgentQuota) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// usage is a namespace's consumption, counted from the cache plus this manager's grants.
type usage struct {
	sessions int
	warm     int
	memory   resource.Quantity
	cpu      int64
	// waiting are the sessions not admitted yet, oldest first (the FIFO queue).
	waiting []*agentsv1alpha1.AgentSession
	// warmByPool is the cache's warm pods per class (its grants are not by class).
	warmByPool map[string]int
}

// sessionAdmitted reports whether the quota admitted the session (or it holds a pod).
func sessionAdmitted(s *agentsv1alpha1.AgentSession) bool {
	return s.Status.PodName != "" || meta.IsStatusConditionTrue(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
}

// measure counts a namespace's usage. The ledger must be locked.
func (q *quotaKeeper) measure(ctx context.Context, ns string, l *namespaceLedger) (*usage, error) {
	sessions := &agentsv1alpha1.AgentSessionList{}
	if err := q.reader.List(ctx, sessions, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	pods, err := q.podBook(ctx, ns)
	if err != nil {
		return nil, err
	}
	classes, err := listNamespaceClasses(ctx, q.reader, ns)
	if err != nil {
		return nil, err
	}
	now := q.clock.Now()
	// The pods' charge, from the book: every pod not yet ended, terminating ones included
	// (its VM runs until the pod is gone: the grace period, which the manager holds to the
	// class's, or a finalizer), though those hold no session slot and are no warm sandbox.
	// A session holding a live pod counts even when its status does not say so yet: a
	// manager that bound it and died before the status write leaves it so until the next
	// leader reconciles it (poolbook.Holder: its controller and its session label agree).
	charged := pods.Namespace(ns, classes.bookShape)
	u := &usage{warm: charged.Warm, warmByPool: charged.WarmByClass, memory: charged.Footprint.Memory.DeepCopy(),
		cpu: int64(charged.Footprint.VCPUs)}
	holdsPod := charged.Holders
	seen := map[types.UID]bool{}
	for i := range sessions.Items {
		s := &sessions.Items[i]
		seen[s.UID] = true
		_, granted := l.sessions[s.UID]
		switch {
		case s.Status.Phase.IsFinished():
			delete(l.sessions, s.UID)
			delete(l.queued, s.UID)
		case sessionAdmitted(s):
			delete(l.sessions, s.UID) // the cache shows the grant now
			delete(l.queued, s.UID)
			u.sessions++
		case granted, holdsPod[poolbook.Holder{UID: s.UID, Name: s.Name}]:
			delete(l.queued, s.UID)
			u.sessions++
		default:
			if s.Status.Phase == agentsv1alpha1.SessionQueued {
				delete(l.queued, s.UID) // the cache shows the wait now
			}
			u.waiting = append(u.waiting, s)
		}
	}
	for uid := range l.sessions {
		if !seen[uid] {
			// Deleted before the cache showed its admission. A grant is only ever made for
			// a session this cache lists, so one it no longer lists is gone: its slot is
			// free now, not after expectations.ClaimTTL.
			delete(l.sessions, uid)
		}
	}
	for uid := range l.queued {
		if !seen[uid] {
			delete(l.queued, uid)
		}
	}
	slices.SortFunc(u.waiting, func(a, b *agentsv1alpha1.AgentSession) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for name, g := range l.pods {
		if pods.Has(types.NamespacedName{Namespace: ns, Name: name}) || now.Sub(g.at) > expectations.TTL {
			delete(l.pods, name)
			continue
		}
		if g.warm {
			u.warm++
		}
		u.add(g.footprint)
	}
	return u, nil
}

func (u *usage) add(f agentsv1alpha1.Footprint) {
	u.memory.Add(f.Memory)
	u.cpu += int64(f.VCPUs)
}

// admission is a quota's answer to a session.
type admission struct {
	admitted bool
	// refused: the session may not even wait (the queue is full); it ends with reason.
	refused bool
	reason  string // WaitingForQuota or ExceedsQuota when it waits, QueueFull when refused
	message string
	// enforced is false when no quota applies to the namespace.
	enforced bool
}

// admitSession decides whether a session may start. Sessions are admitted in FIFO order
// (creation time, then name): a session is admitted only when it is among the first
// `hard.sessions - active` waiting sessions, so a later one never overtakes an earlier one.
// A session that would wait behind maxQueued others is refused instead.
func (q *quotaKeeper) admitSession(ctx context.Context, s *agentsv1alpha1.AgentSession) (admission, error) {
	quota, err := q.quotaFor(ctx, s.Namespace)
	if err != nil {
		return admission{}, err
	}
	if quota == nil || quota.hard.Sessions == nil {
		return admission{admitted: true}, nil
	}
	limit := int(*quota.hard.Sessions)
	l := q.lockLedger(s.Namespace)
	defer q.unlockLedger(s.Namespace, l)
	u, err := q.measure(ctx, s.Namespace, l)
	if err != nil {
		return admission{}, err
	}
	position := slices.IndexFunc(u.waiting, func(w *agentsv1alpha1.AgentSession) bool { return w.UID == s.UID })
	if position < 0 {
		return admission{admitted: true, enforced: true}, nil // already counted as admitted
	}
	if u.sessions+position+1 <= limit {
		l.sessions[s.UID] = q.clock.Now()
		return admission{admitted: true, enforced: true}, nil
	}
	// It would wait, and so would the others in the queue: those ahead of it that the free
	// slots do not take, and those behind it (in FIFO order: a session created in the same
	// second with an earlier name sorts first) already queued. A session already queued
	// keeps its place, even when maxQueued was lowered since.
	if s.Status.Phase != agentsv1alpha1.SessionQueued {
		queued := position - max(limit-u.sessions, 0)
		for _, w := range u.waiting[position+1:] {
			if w.Status.Phase == agentsv1alpha1.SessionQueued || l.queued[w.UID] {
				queued++
			}
		}
		if queued >= quota.maxQueued {
			fix := "raise spec.maxQueued"
			if quota.name == "" {
				fix = "raise the manager's --max-queued-sessions"
			}
			return admission{refused: true, enforced: true, reason: agentsv1alpha1.ReasonQueueFull, message: fmt.Sprintf(
				"sessions: 1 more would make %d queued > maxQueued %d of %s; retry later or %s",
				queued+1, quota.maxQueued, quota.describe(), fix)}, nil
		}
	}
	if s.Status.Phase != agentsv1alpha1.SessionQueued {
		l.queued[s.UID] = true // until the cache shows it waiting
	}
	if limit == 0 {
		return admission{reason: agentsv1alpha1.ReasonExceedsQuota, enforced: true, message: fmt.Sprintf(
			"sessions: 1 requested > 0 allowed by %s; the session waits until the limit is raised", quota.describe())}, nil
	}
	// The sessions queued ahead count as in use: they take the next free slots. The message
	// leaves out the position, which changes with every admission: rewriting every waiting
	// session each time would cost the API server more than the queue is worth. The
	// AgentQuota's status shows the queue instead.
	inUse := max(u.sessions, min(limit, u.sessions+position))
	msg := fmt.Sprintf("sessions: 1 requested + %d in use > %d allowed by %s; waiting in FIFO order (see the quota's queueHead)",
		inUse, limit, quota.describe())
	return admission{reason: agentsv1alpha1.ReasonWaitingForQuota, message: msg, enforced: true}, nil
}

// admissibleHead returns the waiting sessions of ns that its sessions limit would admit
// now, oldest first: the head of the FIFO queue, one per free slot. limited is false when
// no sessions limit applies (then head is nil, and any waiting session may be admitted).
func (q *quotaKeeper) admissibleHead(ctx context.Context, ns string) (head []types.NamespacedName, limited bool, err error) {
	quota, err := q.quotaFor(ctx, ns)
	if err != nil || quota == nil || quota.hard.Sessions == nil {
		return nil, false, err
	}
	l := q.lockLedger(ns)
	defer q.unlockLedger(ns, l)
	u, err := q.measure(ctx, ns, l)
	if err != nil {
		return nil, false, err
	}
	free := min(max(int(*quota.hard.Sessions)-u.sessions, 0), len(u.waiting))
	for _, s := range u.waiting[:free] {
		head = append(head, types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
	}
	return head, true, nil
}

// currentUsage measures a namespace for the AgentQuota status.
func (q *quotaKeeper) currentUsage(ctx context.Context, ns string) (*usage, error) {
	l := q.lockLedger(ns)
	defer q.unlockLedger(ns, l)
	return q.measure(ctx, ns, l)
}
