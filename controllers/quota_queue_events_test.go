package controllers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
	"github.com/hyperpool/hyperpool/test/builders"
)

// listCounter counts a client's List calls by list type.
type listCounter struct {
	client.Client
	mu    sync.Mutex
	lists map[string]int
}

func (c *listCounter) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.mu.Lock()
	c.lists[fmt.Sprintf("%T", list)]++
	c.mu.Unlock()
	return c.Client.List(ctx, list, opts...)
}

func (c *listCounter) count(list client.ObjectList) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lists[fmt.Sprintf("%T", list)]
}

// queueFixture: a namespace with a sessions quota of 1, one admitted session and two queued
// behind it, and a Ready warm pod and a bound pod being deleted; the session controller and
// the quota-queue controller over a fake client that counts lists.
func queueFixture(t *testing.T) (*listCounter, *AgentSessionReconciler, *quotaQueueReconciler, chan event.TypedGenericEvent[*agentsv1alpha1.AgentSession], []client.Object) {
	t.Helper()
	const ns = "team"
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	admitted := builders.AgentSession(ns, "admitted", "pool").UID("uid-a").Created(base).QuotaReserved().Obj()
	queued1 := builders.AgentSession(ns, "queued-1", "pool").UID("uid-1").Created(base.Add(time.Second)).Phase(agentsv1alpha1.SessionQueued).Obj()
	queued2 := builders.AgentSession(ns, "queued-2", "pool").UID("uid-2").Created(base.Add(2 * time.Second)).Phase(agentsv1alpha1.SessionQueued).Obj()
	warm := builders.Pod(ns, "pool-warm").Label(agentsv1alpha1.ClassLabel, "pool").Node("n1").Ready().Obj()
	warm.Status.Phase = corev1.PodRunning
	bound := builders.Pod(ns, "pool-bound").Label(agentsv1alpha1.ClassLabel, "pool").Label(agentsv1alpha1.SessionLabel, "admitted").
		OwnedBy(admitted).Node("n1").Terminating(base).Obj()
	bound.Finalizers = []string{"example.com/keep"} // the fake client stores a deleting object only with one
	quota := builders.AgentQuota(ns, "q").Sessions(1).Obj()

	idx := recordingIndexer{}
	if err := RegisterIndexes(context.Background(), idx); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(quota, admitted, queued1, queued2, warm, bound).
		WithStatusSubresource(&agentsv1alpha1.AgentSession{})
	for _, ix := range []struct {
		obj   client.Object
		field string
	}{{&agentsv1alpha1.AgentSession{}, sessionWaitingIndex}, {&agentsv1alpha1.AgentSession{}, sessionQueuedIndex}} {
		b = b.WithIndex(ix.obj, ix.field, idx[ix.field])
	}
	c := &listCounter{Client: b.Build(), lists: map[string]int{}}
	r := &AgentSessionReconciler{Client: c, config: DefaultConfig(),
		quota: newQuotaKeeper(c, Config{MaxQueuedSessions: DefaultConfig().MaxQueuedSessions}, clock.RealClock{})}
	r.quota.book = poolbook.New()
	for _, p := range []*corev1.Pod{warm, bound} {
		r.quota.book.Update(p)
	}
	wakes := make(chan event.TypedGenericEvent[*agentsv1alpha1.AgentSession], 10)
	return c, r, newQuotaQueueReconciler(r, wakes), wakes, []client.Object{warm, bound, quota, queued1}
}

// Quota usage is not measured inside event handlers: a pod, session or quota event only
// names the namespace (or the sessions waiting for a warm pod), and measures nothing.
// Before, every such event ran a full measure of its namespace (its quotas, pods and
// sessions listed) on the informer's goroutine.
func TestQueueEventHandlersDoNotMeasureTheQuota(t *testing.T) {
	c, r, _, _, objs := queueFixture(t)
	ctx := context.Background()
	for _, o := range objs {
		r.podToSessions(ctx, o)
		if p, ok := o.(*corev1.Pod); ok {
			frees(poolbook.PodOf(p))
		}
		namespaceKey(ctx, o)
	}
	if n, m := c.count(&agentsv1alpha1.AgentQuotaList{}), c.count(&corev1.PodList{}); n != 0 || m != 0 {
		t.Errorf("event handlers listed AgentQuotas %d times and pods %d times; want none: the quota is measured in the quota-queue reconcile", n, m)
	}
	want := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: "team"}}}
	for i, o := range objs[:2] {
		if !frees(poolbook.PodOf(o.(*corev1.Pod))) {
			t.Errorf("pod %d (%s) does not wake the namespace's queue (%v), want it to", i, o.GetName(), want)
		}
	}
}

// The quota-queue reconcile measures the namespace and wakes the head of its queue, one
// session per free slot.
func TestQueueReconcileWakesTheHead(t *testing.T) {
	c, _, q, wakes, _ := queueFixture(t)
	ctx := context.Background()
	// The admitted session's pod is going: its slot is still counted until the session
	// ends, so nothing is admissible; once it ends, queued-1 (the oldest) is.
	admitted := &agentsv1alpha1.AgentSession{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "team", Name: "admitted"}, admitted); err != nil {
		t.Fatal(err)
	}
	admitted.Status.Phase = agentsv1alpha1.SessionTerminated
	admitted.Status.EndTime = &metav1.Time{Time: time.Now()}
	if err := c.Status().Update(ctx, admitted); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "team"}}); err != nil {
		t.Fatal(err)
	}
	var woken []string
	for len(wakes) > 0 {
		woken = append(woken, (<-wakes).Object.Name)
	}
	if len(woken) != 1 || woken[0] != "queued-1" {
		t.Errorf("woken %v, want [queued-1]: one free slot, the oldest queued session", woken)
	}
}
