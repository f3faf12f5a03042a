package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// unitScheme holds client-go's kinds and the hyperpool API, for the fake clients of unit
// tests (the integration tests use the test bed's).
func unitScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := agentsv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// recordingIndexer keeps the extract functions RegisterIndexes registers.
type recordingIndexer map[string]client.IndexerFunc

func (r recordingIndexer) IndexField(_ context.Context, _ client.Object, field string, extract client.IndexerFunc) error {
	r[field] = extract
	return nil
}

// A Ready warm pod must not wake sessions queued behind the quota: before, every warm pod
// event reconciled the whole queue (found by the chaos test: a queue of a few hundred
// drained at a few sessions a second, the manager's CPU spent measuring the namespace).
func TestQueuedSessionsAreNotWaitingForWarmPods(t *testing.T) {
	idx := recordingIndexer{}
	if err := RegisterIndexes(context.Background(), idx); err != nil {
		t.Fatal(err)
	}
	waiting := idx[sessionWaitingIndex]
	s := builders.AgentSession("", "", "pool").Obj()
	for _, tc := range []struct {
		phase agentsv1alpha1.SessionPhase
		want  []string
	}{
		{"", []string{"pool"}},
		{agentsv1alpha1.SessionPending, []string{"pool"}},
		{agentsv1alpha1.SessionQueued, nil},
		{agentsv1alpha1.SessionExpired, nil},
	} {
		s.Status.Phase = tc.phase
		if got := waiting(s); !slices.Equal(got, tc.want) {
			t.Errorf("phase %q: waiting index %v, want %v", tc.phase, got, tc.want)
		}
	}
}

// admissibleHead wakes one queued session per free slot, oldest first.
func TestAdmissibleHeadIsOneSessionPerFreeSlot(t *testing.T) {
	scheme := unitScheme(t)
	const ns = "team"
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	objs := []client.Object{builders.AgentQuota(ns, "q").Sessions(3).Obj()}
	for i := range 7 {
		s := builders.AgentSession(ns, fmt.Sprintf("s-%d", i), "pool").
			UID(types.UID(fmt.Sprintf("uid-%d", i))).Created(base.Add(time.Duration(i) * time.Second))
		if i < 2 { // two admitted, five queued
			s.QuotaReserved()
		} else {
			s.Phase(agentsv1alpha1.SessionQueued)
		}
		objs = append(objs, s.Obj())
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&agentsv1alpha1.AgentSession{}).Build()
	q := newQuotaKeeper(c, Config{MaxQueuedSessions: DefaultConfig().MaxQueuedSessions}, clock.RealClock{})

	head, limited, err := q.admissibleHead(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	want := []types.NamespacedName{{Namespace: ns, Name: "s-2"}}
	if !limited || !slices.Equal(head, want) {
		t.Errorf("admissibleHead = %v (limited %v), want %v (limited)", head, limited, want)
	}

	head, limited, err = q.admissibleHead(context.Background(), "no-quota")
	if err != nil || limited || head != nil {
		t.Errorf("without a quota: admissibleHead = %v, limited %v, err %v; want nil, false, nil", head, limited, err)
	}
}

// A session whose pod is bound but whose status does not say so yet (its manager died
// between the two writes of the bind) holds a quota slot: a quota that appeared meanwhile
// must not admit an older waiting session past the limit.
func TestASessionHoldingAPodCountsAgainstTheQuota(t *testing.T) {
	scheme := unitScheme(t)
	const ns = "team"
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	session := func(name string, age time.Duration) *builders.AgentSessionWrapper {
		return builders.AgentSession(ns, name, "pool").UID(types.UID("uid-" + name)).Created(base.Add(-age))
	}
	admitted := session("admitted", 3*time.Minute).QuotaReserved().Obj()
	waiting := session("waiting", 2*time.Minute).Obj()
	bound := session("bound", time.Minute).Obj() // no status: the bind's status write was lost
	pod := builders.Pod(ns, "pool-abcde").Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.SessionLabel, "bound").
		OwnedBy(bound).Obj()
	quota := builders.AgentQuota(ns, "q").Sessions(2).Obj()
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(quota, admitted, waiting, bound, pod).
		WithStatusSubresource(&agentsv1alpha1.AgentSession{}).Build()
	q := newQuotaKeeper(c, Config{MaxQueuedSessions: DefaultConfig().MaxQueuedSessions}, clock.RealClock{})

	head, limited, err := q.admissibleHead(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	if !limited || len(head) != 0 {
		t.Errorf("admissibleHead = %v (limited %v); want none: admitted and bound fill the quota of 2", head, limited)
	}
}

// quotaFixture is a namespace's quota and sessions in a fake client, for the keeper's logic.
type quotaFixture struct {
	t    *testing.T
	c    client.Client
	q    *quotaKeeper
	ns   string
	base time.Time
	n    int
}

func newQuotaFixture(t *testing.T, hard agentsv1alpha1.QuotaLimits, maxQueued *int32, objs ...client.Object) *quotaFixture {
	t.Helper()
	const ns = "team"
	quota := builders.AgentQuota(ns, "q").Hard(hard).Obj()
	quota.Spec.MaxQueued = maxQueued
	c := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(append(objs, quota)...).
		WithStatusSubresource(&agentsv1alpha1.AgentSession{}).Build()
	return &quotaFixture{t: t, c: c, q: newQuotaKeeper(c, Config{MaxQueuedSessions: DefaultConfig().MaxQueuedSessions}, clock.RealClock{}), ns: ns, base: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// session creates a session, younger than every one before it.
func (f *quotaFixture) session(name string) *agentsv1alpha1.AgentSession {
	f.t.Helper()
	f.n++
	s := builders.AgentSession(f.ns, name, "pool").UID(types.UID("uid-" + name)).Created(f.base.Add(time.Duration(f.n) * time.Second)).Obj()
	if err := f.c.Create(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// admit asks the keeper for s, and records a wait in its status as the controller does.
func (f *quotaFixture) admit(s *agentsv1alpha1.AgentSession) admission {
	f.t.Helper()
	adm, err := f.q.admitSession(context.Background(), s)
	if err != nil {
		f.t.Fatal(err)
	}
	if !adm.admitted && !adm.refused {
		s.Status.Phase = agentsv1alpha1.SessionQueued
		if err := f.c.Status().Update(context.Background(), s); err != nil {
			f.t.Fatal(err)
		}
	}
	return adm
}

func (f *quotaFixture) head() []string {
	f.t.Helper()
	head, _, err := f.q.admissibleHead(context.Background(), f.ns)
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, k := range head {
		names = append(names, k.Name)
	}
	return names
}

// A pod counts for a session only when its session label names that session: an owner
// reference alone (which a tenant who may create pods can write) takes no slot.
func TestAPodCountsForASessionOnlyWithItsSessionLabel(t *testing.T) {
	owner := builders.AgentSession("team", "waiting", "").UID("uid-waiting").Obj()
	pod := func(name, sessionLabel string) *corev1.Pod {
		return builders.Pod("team", name).Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.SessionLabel, sessionLabel).
			OwnedBy(owner).Obj()
	}
	for _, tc := range []struct {
		name      string
		label     string
		wantAdmit bool
	}{
		{"labelled for another session", "other", true},
		{"labelled for the owner", "waiting", false}, // it holds the pod: already counted
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newQuotaFixture(t, agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(1))}, nil, pod("forged", tc.label))
			s := f.session("waiting")
			head := f.head()
			if got := slices.Equal(head, []string{"waiting"}); got != tc.wantAdmit {
				t.Errorf("admissible head = %v; want waiting admissible: %v", head, tc.wantAdmit)
			}
			_ = s
		})
	}
}

// Without its Namespace in the cache, the keeper cannot tell whether the default quota
// applies: it fails closed (an error, retried), never "no limit".
func TestDefaultQuotaFailsClosedWhenTheNamespaceCannotBeRead(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(unitScheme(t)).Build()
	deny, _ := ParseQuotaLimits("sessions=0,warmSandboxes=0")
	q := newQuotaKeeper(c, Config{DefaultQuota: deny, DefaultQuotaNamespaces: labels.SelectorFromSet(labels.Set{"tier": "tenant"}), MaxQueuedSessions: DefaultConfig().MaxQueuedSessions}, clock.RealClock{})
	s := builders.AgentSession("unseen", "s", "").UID("uid-s").Obj()
	adm, err := q.admitSession(context.Background(), s)
	if err == nil || adm.admitted {
		t.Errorf("admitSession = %+v, %v; want an error and no admission", adm, err)
	}
	grants, _, err := q.reservePods(context.Background(), "unseen", agentsv1alpha1.Footprint{}, 1, true)
	if err == nil || len(grants) != 0 {
		t.Errorf("reservePods = %d grants, %v; want an error and none", len(grants), err)
	}
	if _, err := q.excessWarm(context.Background(), "unseen"); err == nil {
		t.Error("excessWarm: no error; want one")
	}
}

// A session parked again after its admission (its cold start refused) gives back its slot:
// it is counted as waiting, and the next one in line may take the slot.
func TestUnadmittingASessionGivesBackItsSlot(t *testing.T) {
	f := newQuotaFixture(t, agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(1))}, nil)
	a := f.session("a")
	if adm := f.admit(a); !adm.admitted {
		t.Fatalf("a: %+v, want admitted", adm)
	}
	f.q.releaseSession(a) // markQueued: its cold start was refused
	if head := f.head(); !slices.Equal(head, []string{"a"}) {
		t.Errorf("after the release: admissible head = %v, want [a] (its slot is free again)", head)
	}
	u, err := f.q.currentUsage(context.Background(), f.ns)
	if err != nil {
		t.Fatal(err)
	}
	if u.sessions != 0 || len(u.waiting) != 1 {
		t.Errorf("usage: %d sessions, %d waiting; want 0 and 1", u.sessions, len(u.waiting))
	}
}

// A session deleted before the cache shows its admission frees its slot at once, and its
// grant goes with it, not claimTTL later (until then the namespace's ledger stayed).
func TestASessionDeletedBeforeItsAdmissionShowsFreesItsSlot(t *testing.T) {
	f := newQuotaFixture(t, agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(1))}, nil)
	ghost := f.session("ghost")
	if adm := f.admit(ghost); !adm.admitted {
		t.Fatalf("ghost: %+v, want admitted", adm)
	}
	if err := f.c.Delete(context.Background(), ghost); err != nil {
		t.Fatal(err)
	}
	u, err := f.q.currentUsage(context.Background(), f.ns)
	if err != nil {
		t.Fatal(err)
	}
	if u.sessions != 0 {
		t.Errorf("%d sessions in use after the only one was deleted, want 0", u.sessions)
	}
	if n := f.q.trackedNamespaces(); n != 0 {
		t.Errorf("the keeper still holds the deleted session's grant (%d namespaces tracked, want 0)", n)
	}
	next := f.session("next")
	if adm := f.admit(next); !adm.admitted {
		t.Errorf("next: %+v; want admitted, the deleted ghost's slot is free", adm)
	}
}

// The queue is bounded: a session that would wait behind maxQueued others is refused with
// QueueFull; one already queued keeps its place.
func TestQueueBeyondMaxQueuedIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxQueued *int32
		keeper    int32 // the manager's --max-queued-sessions
		wait      int   // sessions that may wait
		wantIn    string
	}{
		{"spec.maxQueued", ptr.To(int32(2)), 1000, 2, "> maxQueued 2 of AgentQuota q; retry later or raise spec.maxQueued"},
		{"the manager's default", nil, 3, 3, "> maxQueued 3 of AgentQuota q"},
		{"zero: none waits", ptr.To(int32(0)), 1000, 0, "sessions: 1 more would make 1 queued > maxQueued 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newQuotaFixture(t, agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(1))}, tc.maxQueued)
			f.q.defaultMaxQueued = tc.keeper
			if adm := f.admit(f.session("running")); !adm.admitted {
				t.Fatalf("running: %+v, want admitted", adm)
			}
			for i := range tc.wait {
				s := f.session(fmt.Sprintf("wait-%d", i))
				if adm := f.admit(s); adm.admitted || adm.refused || adm.reason != agentsv1alpha1.ReasonWaitingForQuota {
					t.Fatalf("%s: %+v, want WaitingForQuota", s.Name, adm)
				}
			}
			over := f.session("over")
			adm := f.admit(over)
			if !adm.refused || adm.reason != agentsv1alpha1.ReasonQueueFull || !strings.Contains(adm.message, tc.wantIn) {
				t.Errorf("over: %+v; want refused, QueueFull, message containing %q", adm, tc.wantIn)
			}
			// Already queued (maxQueued lowered since): it keeps its place.
			over.Status.Phase = agentsv1alpha1.SessionQueued
			if adm := f.admit(over); adm.refused {
				t.Errorf("a queued session: %+v; want it to keep waiting", adm)
			}
		})
	}
	// A session that sorts ahead of the queued ones (created in the same second, with an
	// earlier name) still finds the queue full.
	f := newQuotaFixture(t, agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(1))}, ptr.To(int32(2)))
	for _, name := range []string{"running", "wait-1", "wait-2"} {
		f.n = 0 // one creation second for all
		f.admit(f.session(name))
	}
	f.n = 0
	if adm := f.admit(f.session("early")); !adm.refused || !strings.Contains(adm.message, "would make 3 queued > maxQueued 2") {
		t.Errorf("a session sorting ahead of a full queue: %+v, want refused with 3 > 2", adm)
	}
	// A quota of zero sessions bounds its queue too.
	f = newQuotaFixture(t, agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(0))}, ptr.To(int32(1)))
	if adm := f.admit(f.session("first")); adm.refused || adm.reason != agentsv1alpha1.ReasonExceedsQuota {
		t.Errorf("first under a quota of 0: %+v, want ExceedsQuota, waiting", adm)
	}
	if adm := f.admit(f.session("second")); !adm.refused {
		t.Errorf("second under a quota of 0 with maxQueued 1: %+v, want refused", adm)
	}
}

// The keeper holds a ledger only while it holds grants, and none for a deleted namespace.
func TestQuotaKeeperForgetsIdleAndDeletedNamespaces(t *testing.T) {
	f := newQuotaFixture(t, agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(5))}, nil)
	for _, ns := range []string{"quiet-1", "quiet-2", "quiet-3"} {
		if _, err := f.q.currentUsage(context.Background(), ns); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.q.trackedNamespaces(); n != 0 {
		t.Errorf("after measuring three idle namespaces the keeper tracks %d, want 0", n)
	}
	a := f.session("a")
	if adm := f.admit(a); !adm.admitted {
		t.Fatalf("a: %+v", adm)
	}
	if n := f.q.trackedNamespaces(); n != 1 {
		t.Fatalf("with a grant the cache does not show yet the keeper tracks %d namespaces, want 1", n)
	}
	// The cache shows the admission: the grant, and the ledger, go.
	meta.SetStatusCondition(&a.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.QuotaReserved,
		Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonQuotaReserved})
	if err := f.c.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.currentUsage(context.Background(), f.ns); err != nil {
		t.Fatal(err)
	}
	if n := f.q.trackedNamespaces(); n != 0 {
		t.Errorf("once the cache shows every grant the keeper tracks %d namespaces, want 0", n)
	}
	// A namespace deleted with grants in flight: the Namespace watch forgets it.
	b := f.session("b")
	if adm := f.admit(b); !adm.admitted {
		t.Fatalf("b: %+v", adm)
	}
	r := &AgentQuotaReconciler{quota: f.q}
	r.namespaceDeleted(f.ns)
	if n := f.q.trackedNamespaces(); n != 0 {
		t.Errorf("after the namespace's deletion the keeper tracks %d namespaces, want 0", n)
	}
}

// The pools of a namespace split a warm excess in proportion to their warm pods, the
// shares adding up to the excess.
func TestWarmShares(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		warm map[string]int
		want map[string]int
	}{
		{"two equal pools", 2, map[string]int{"a": 2, "b": 2}, map[string]int{"a": 1, "b": 1}},
		{"in proportion", 3, map[string]int{"a": 4, "b": 2}, map[string]int{"a": 2, "b": 1}},
		{"remainder to the largest fraction", 2, map[string]int{"a": 1, "b": 5}, map[string]int{"a": 0, "b": 2}},
		{"tied remainders by name", 1, map[string]int{"b": 3, "a": 3, "c": 3}, map[string]int{"a": 1, "b": 0, "c": 0}},
		{"three-way", 5, map[string]int{"a": 3, "b": 3, "c": 3}, map[string]int{"a": 2, "b": 2, "c": 1}},
		{"excess beyond every pod", 10, map[string]int{"a": 1, "b": 2}, map[string]int{"a": 1, "b": 2}},
		{"no excess", 0, map[string]int{"a": 4}, map[string]int{}},
		{"a pool with none", 2, map[string]int{"a": 0, "b": 4}, map[string]int{"a": 0, "b": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := warmShares(tc.n, tc.warm)
			sum, total := 0, 0
			for pool, w := range tc.warm {
				sum += got[pool]
				total += w
				if got[pool] != tc.want[pool] {
					t.Errorf("pool %s: share %d, want %d (all: %v)", pool, got[pool], tc.want[pool], got)
				}
				if got[pool] > w {
					t.Errorf("pool %s gives %d of its %d", pool, got[pool], w)
				}
			}
			if want := min(max(tc.n, 0), total); sum != want {
				t.Errorf("shares add up to %d, want %d", sum, want)
			}
		})
	}
	// A pool's own count replaces the cache's (its creations in flight included).
	w := warmExcess{excess: 2, byPool: map[string]int{"a": 1, "b": 2}}
	if got := w.share("a", 2); got != 1 {
		t.Errorf("share of a holding 2 of 4 with an excess of 2 = %d, want 1", got)
	}
}
