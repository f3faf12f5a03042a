package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// A manager that takes the Lease gets every session in the initial list at once. The
// sessions that hold a sandbox must come out of its workqueue before the others: their
// deadline may have passed while no manager led. Found by the chaos test: the initial list
// came at one low priority, in the informer's order, and the few overdue sessions waited
// behind hundreds of queued ones (each measuring the namespace under the quota lock). Each
// leader, leading 5 s between faults, ended a handful of them, and sessions ended up to
// minutes after their deadline. Without sessionEvents (For's handler), the first sessions out
// here are the quota wake and the queued sessions, in the order they were listed.
func TestTakeoverReconcilesSessionsHoldingASandboxFirst(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	session := func(name string) *builders.AgentSessionWrapper {
		return builders.AgentSession("team", name, "pool").MaxLifetime(3 * time.Second)
	}
	var listed []*agentsv1alpha1.AgentSession // in the informer's order: the bound ones last
	for i := range 200 {
		listed = append(listed, session(fmt.Sprintf("queued-%03d", i)).Phase(agentsv1alpha1.SessionQueued).Obj())
	}
	for i := range 50 {
		listed = append(listed, session(fmt.Sprintf("ended-%03d", i)).Phase(agentsv1alpha1.SessionExpired).
			BoundTo(fmt.Sprintf("pool-e%03d", i), now.Add(-time.Minute)).Obj())
	}
	listed = append(listed, session("admitted").Phase(agentsv1alpha1.SessionPending).QuotaReserved().Obj())
	holding := map[string]bool{"overdue": true, "due-soon": true, "starting": true}
	listed = append(listed,
		session("overdue").Phase(agentsv1alpha1.SessionReady).BoundTo("pool-a", now.Add(-40*time.Second)).Obj(),
		session("due-soon").Phase(agentsv1alpha1.SessionReady).BoundTo("pool-b", now.Add(-2*time.Second)).Obj(),
		session("starting").Phase(agentsv1alpha1.SessionStarting).BoundTo("pool-c", now).Obj())

	q := priorityqueue.New[reconcile.Request]("agentsession")
	defer q.ShutDown()
	h := &sessionEvents{}
	ctx := context.Background()
	for _, s := range listed {
		h.Create(ctx, event.CreateEvent{Object: s, IsInInitialList: true}, q)
	}
	// The quota queue wakes the head of the queue meanwhile (a Generic event, priority 0).
	h.Generic(ctx, event.GenericEvent{Object: listed[0]}, q)

	for range len(holding) {
		req, priority, shutdown := q.GetWithPriority()
		if shutdown {
			t.Fatal("the queue shut down")
		}
		q.Done(req)
		if !holding[req.Name] {
			t.Fatalf("session %s (priority %d) came out before every session holding a sandbox (%v) was reconciled", req.Name, priority, holding)
		}
		delete(holding, req.Name)
	}
}

// A session's deadline timer (the RequeueAfter that ends it) and the retry of an end whose
// write failed go before other work: controller-runtime requeues with the priority of the
// reconcile that asked, which for a session first seen in the initial list was the lowest,
// behind every pod event and quota wake. A session without a sandbox keeps its request's
// priority.
func TestDeadlineRequeueGoesFirst(t *testing.T) {
	scheme := unitScheme(t)
	bound := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	sb := builders.AgentSandbox("team", "pool").Replicas(1).Obj()
	node := &corev1.Node{}
	node.Name = "win-0"
	ready := builders.AgentSession("team", "carol", "pool").UID("session-uid").MaxLifetime(3*time.Second).
		Phase(agentsv1alpha1.SessionReady).BoundTo("pool-klmno", bound).Obj()
	pod := builders.Pod("team", "pool-klmno").Label(agentsv1alpha1.ClassLabel, "pool").
		Label(agentsv1alpha1.SessionLabel, "carol").OwnedBy(ready).Node("win-0").Ready().Obj()
	// Admitted, but its class does not exist: it waits for one, and nothing in it is due.
	unbound := builders.AgentSession("team", "dave", "missing").QuotaReserved().Obj()

	for _, tc := range []struct {
		name         string
		now          time.Time
		objs         []client.Object
		wantPriority *int
		wantRequeue  bool
	}{
		{"bound, before its deadline: the timer", bound.Add(time.Second), []client.Object{sb, node, ready, pod}, ptr.To(deadlinePriority), true},
		{"bound, at its deadline: ended now", bound.Add(3 * time.Second), []client.Object{sb, node, ready, pod}, ptr.To(deadlinePriority), true},
		{"not bound", bound, []client.Object{node, unbound}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, result := reconcileResultAt(t, scheme, tc.now, tc.objs...)
			switch {
			case tc.wantPriority == nil && result.Priority != nil:
				t.Errorf("requeue priority %d, want the request's own", *result.Priority)
			case tc.wantPriority != nil && (result.Priority == nil || *result.Priority != *tc.wantPriority):
				t.Errorf("requeue priority %v, want %d", result.Priority, *tc.wantPriority)
			}
			if (result.RequeueAfter > 0) != tc.wantRequeue {
				t.Errorf("requeue after %s, want a requeue: %v", result.RequeueAfter, tc.wantRequeue)
			}
		})
	}
}
