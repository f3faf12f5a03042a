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
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers/uvm"
)

// quotaKeeper decides, per namespace, whether a session may start and whether a pod may be
// created, against the namespace's AgentQuota (or the manager's default quota).
//
// Decisions are serialised per namespace and remember what they granted until the cache
// shows it, so concurrent workers cannot together overshoot a limit while the cache lags
// (50 sessions created at once against a limit of 10 admit exactly 10).
type quotaKeeper struct {
	reader client.Reader
	// defaultHard applies to namespaces without an AgentQuota that match defaultSelector;
	// nil means no limit.
	defaultHard     *agentsv1alpha1.QuotaLimits
	defaultSelector labels.Selector

	mu         sync.Mutex
	namespaces map[string]*namespaceLedger
}

// namespaceLedger is what this manager granted in a namespace that its cache may not show.
type namespaceLedger struct {
	mu       sync.Mutex
	sessions map[types.UID]time.Time // admitted sessions
	pods     map[string]grantedPod   // pods about to be, or just, created: by name or token
}

type grantedPod struct {
	footprint agentsv1alpha1.Footprint
	warm      bool
	at        time.Time
}

func newQuotaKeeper(reader client.Reader, defaultHard *agentsv1alpha1.QuotaLimits, defaultSelector labels.Selector) *quotaKeeper {
	if defaultSelector == nil {
		defaultSelector = labels.Everything()
	}
	return &quotaKeeper{reader: reader, defaultHard: defaultHard, defaultSelector: defaultSelector, namespaces: map[string]*namespaceLedger{}}
}

func (q *quotaKeeper) ledger(ns string) *namespaceLedger {
	q.mu.Lock()
	defer q.mu.Unlock()
	l, ok := q.namespaces[ns]
	if !ok {
		l = &namespaceLedger{sessions: map[types.UID]time.Time{}, pods: map[string]grantedPod{}}
		q.namespaces[ns] = l
	}
	return l
}

// enforcedQuota is the quota in force in a namespace.
type enforcedQuota struct {
	// name is the AgentQuota's name, or "" for the manager's default.
	name string
	hard agentsv1alpha1.QuotaLimits
}

func (e *enforcedQuota) describe() string {
	if e.name == "" {
		return "the manager's default quota"
	}
	return "AgentQuota " + e.name
}

// quotaFor returns the quota in force in ns, or nil if none. With several AgentQuotas the
// oldest is enforced (and the others say so in their conditions).
func (q *quotaKeeper) quotaFor(ctx context.Context, ns string) (*enforcedQuota, error) {
	list := &agentsv1alpha1.AgentQuotaList{}
	if err := q.reader.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing AgentQuotas in %s: %w", ns, err)
	}
	if len(list.Items) > 0 {
		oldest := slices.MinFunc(list.Items, olderFirst)
		return &enforcedQuota{name: oldest.Name, hard: oldest.Spec.Hard}, nil
	}
	if q.defaultHard == nil {
		return nil, nil
	}
	if !q.defaultSelector.Empty() {
		nsObj := &metav1.PartialObjectMetadata{}
		nsObj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := q.reader.Get(ctx, types.NamespacedName{Name: ns}, nsObj); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		if !q.defaultSelector.Matches(labels.Set(nsObj.Labels)) {
			return nil, nil
		}
	}
	return &enforcedQuota{hard: *q.defaultHard}, nil
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
	pods := &corev1.PodList{}
	if err := q.reader.List(ctx, pods, client.InNamespace(ns), client.HasLabels{agentsv1alpha1.SandboxLabel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	now := time.Now()
	u := &usage{}
	live := map[string]bool{}
	// A session holding a live pod counts even when its status does not say so yet: a
	// manager that bound it and died before the status write leaves it so until the next
	// leader reconciles it.
	holdsPod := map[types.UID]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		live[p.Name] = true
		if !p.DeletionTimestamp.IsZero() || isPodTerminated(p) {
			continue
		}
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "AgentSession" {
			holdsPod[ref.UID] = true
		}
		if p.Labels[agentsv1alpha1.SessionLabel] == "" {
			u.warm++
		}
		u.add(uvm.FootprintFromPod(p))
	}
	seen := map[types.UID]bool{}
	for i := range sessions.Items {
		s := &sessions.Items[i]
		seen[s.UID] = true
		_, granted := l.sessions[s.UID]
		switch {
		case s.Status.Phase.IsFinished():
			delete(l.sessions, s.UID)
		case sessionAdmitted(s):
			delete(l.sessions, s.UID) // the cache shows the grant now
			u.sessions++
		case granted, holdsPod[s.UID]:
			u.sessions++
		default:
			u.waiting = append(u.waiting, s)
		}
	}
	for uid, at := range l.sessions {
		if !seen[uid] && now.Sub(at) > claimTTL {
			delete(l.sessions, uid) // deleted before the cache showed it
		}
	}
	slices.SortFunc(u.waiting, func(a, b *agentsv1alpha1.AgentSession) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for name, g := range l.pods {
		if live[name] || now.Sub(g.at) > expectationTTL {
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
	reason   string // WaitingForQuota or ExceedsQuota when not admitted
	message  string
	// enforced is false when no quota applies to the namespace.
	enforced bool
}

// admitSession decides whether a session may start. Sessions are admitted in FIFO order
// (creation time, then name): a session is admitted only when it is among the first
// `hard.sessions - active` waiting sessions, so a later one never overtakes an earlier one.
func (q *quotaKeeper) admitSession(ctx context.Context, s *agentsv1alpha1.AgentSession) (admission, error) {
	quota, err := q.quotaFor(ctx, s.Namespace)
	if err != nil || quota == nil || quota.hard.Sessions == nil {
		return admission{admitted: true}, err
	}
	limit := int(*quota.hard.Sessions)
	if limit == 0 {
		return admission{reason: agentsv1alpha1.ReasonExceedsQuota, enforced: true, message: fmt.Sprintf(
			"sessions: 1 requested > 0 allowed by %s; the session waits until the limit is raised", quota.describe())}, nil
	}
	l := q.ledger(s.Namespace)
	l.mu.Lock()
	defer l.mu.Unlock()
	u, err := q.measure(ctx, s.Namespace, l)
	if err != nil {
		return admission{}, err
	}
	position := slices.IndexFunc(u.waiting, func(w *agentsv1alpha1.AgentSession) bool { return w.UID == s.UID })
	if position < 0 {
		return admission{admitted: true, enforced: true}, nil // already counted as admitted
	}
	if u.sessions+position+1 <= limit {
		l.sessions[s.UID] = time.Now()
		return admission{admitted: true, enforced: true}, nil
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
	l := q.ledger(ns)
	l.mu.Lock()
	defer l.mu.Unlock()
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

// podGrant is a permission to create one pod, to be confirmed with its name or released.
type podGrant struct {
	ledger *namespaceLedger
	token  string
}

// confirm records the created pod's name, so the grant counts until the cache shows it.
func (g *podGrant) confirm(name string) {
	if g == nil {
		return
	}
	g.ledger.mu.Lock()
	defer g.ledger.mu.Unlock()
	p := g.ledger.pods[g.token]
	delete(g.ledger.pods, g.token)
	p.at = time.Now()
	g.ledger.pods[name] = p
}

// release gives back a grant whose pod was not created.
func (g *podGrant) release() {
	if g == nil {
		return
	}
	g.ledger.mu.Lock()
	defer g.ledger.mu.Unlock()
	delete(g.ledger.pods, g.token)
}

// reservePods grants up to n pods of footprint f (warm: for a pool). It returns the grants
// (possibly fewer than n) and, when the quota held some back, why.
func (q *quotaKeeper) reservePods(ctx context.Context, ns string, f agentsv1alpha1.Footprint, n int, warm bool) ([]*podGrant, *blocker, error) {
	quota, err := q.quotaFor(ctx, ns)
	if err != nil {
		return nil, nil, err
	}
	if quota == nil {
		return make([]*podGrant, n), nil, nil // nil grants: nothing to confirm or release
	}
	l := q.ledger(ns)
	l.mu.Lock()
	defer l.mu.Unlock()
	u, err := q.measure(ctx, ns, l)
	if err != nil {
		return nil, nil, err
	}
	var grants []*podGrant
	var blk *blocker
	for range n {
		if blk = quota.blocks(u, f, warm); blk != nil {
			break
		}
		token := fmt.Sprintf("grant-%p-%d", l, len(l.pods))
		for _, exists := l.pods[token]; exists; _, exists = l.pods[token] {
			token += "+"
		}
		l.pods[token] = grantedPod{footprint: f, warm: warm, at: time.Now()}
		if warm {
			u.warm++
		}
		u.add(f)
		grants = append(grants, &podGrant{ledger: l, token: token})
	}
	return grants, blk, nil
}

// blocks says why one more pod of footprint f would exceed the quota, or nil.
func (e *enforcedQuota) blocks(u *usage, f agentsv1alpha1.Footprint, warm bool) *blocker {
	h := e.hard
	exceeds := func(what string, requested, used, allowed string, alone bool) *blocker {
		reason := agentsv1alpha1.ReasonWaitingForQuota
		if alone {
			reason = agentsv1alpha1.ReasonExceedsQuota
		}
		return &blocker{Reason: reason, Message: fmt.Sprintf("%s: %s requested + %s in use > %s allowed by %s",
			what, requested, used, allowed, e.describe())}
	}
	if warm && h.WarmSandboxes != nil && u.warm+1 > int(*h.WarmSandboxes) {
		return exceeds("warmSandboxes", "1", fmt.Sprint(u.warm), fmt.Sprint(*h.WarmSandboxes), *h.WarmSandboxes == 0)
	}
	if h.Memory != nil {
		total := u.memory.DeepCopy()
		total.Add(f.Memory)
		if total.Cmp(*h.Memory) > 0 {
			return exceeds("memory", f.Memory.String(), u.memory.String(), h.Memory.String(), f.Memory.Cmp(*h.Memory) > 0)
		}
	}
	if h.CPU != nil && u.cpu+int64(f.VCPUs) > h.CPU.Value() {
		return exceeds("cpu", fmt.Sprint(f.VCPUs), fmt.Sprint(u.cpu), h.CPU.String(), int64(f.VCPUs) > h.CPU.Value())
	}
	return nil
}

// excessWarm returns how many warm pods the namespace holds beyond its quota's
// warmSandboxes (0 when within it or unlimited), so pools can be trimmed to fit.
func (q *quotaKeeper) excessWarm(ctx context.Context, ns string) (int, *enforcedQuota, error) {
	quota, err := q.quotaFor(ctx, ns)
	if err != nil || quota == nil || quota.hard.WarmSandboxes == nil {
		return 0, quota, err
	}
	l := q.ledger(ns)
	l.mu.Lock()
	defer l.mu.Unlock()
	u, err := q.measure(ctx, ns, l)
	if err != nil {
		return 0, quota, err
	}
	return max(0, u.warm-int(*quota.hard.WarmSandboxes)), quota, nil
}

// currentUsage measures a namespace for the AgentQuota status.
func (q *quotaKeeper) currentUsage(ctx context.Context, ns string) (*usage, error) {
	l := q.ledger(ns)
	l.mu.Lock()
	defer l.mu.Unlock()
	return q.measure(ctx, ns, l)
}
