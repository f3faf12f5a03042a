package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
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
	s := &agentsv1alpha1.AgentSession{Spec: agentsv1alpha1.AgentSessionSpec{SandboxName: "pool"}}
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
	objs := []client.Object{&agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "q"},
		Spec: agentsv1alpha1.AgentQuotaSpec{Hard: agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(3))}}}}
	for i := range 7 {
		s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s-%d", i),
			UID: types.UID(fmt.Sprintf("uid-%d", i)), CreationTimestamp: metav1.NewTime(base.Add(time.Duration(i) * time.Second))},
			Spec: agentsv1alpha1.AgentSessionSpec{SandboxName: "pool"}}
		if i < 2 { // two admitted, five queued
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.QuotaReserved,
				Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonQuotaReserved})
		} else {
			s.Status.Phase = agentsv1alpha1.SessionQueued
		}
		objs = append(objs, s)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&agentsv1alpha1.AgentSession{}).Build()
	q := newQuotaKeeper(c, nil, nil)

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
	session := func(name string, age time.Duration) *agentsv1alpha1.AgentSession {
		return &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(base.Add(-age))}, Spec: agentsv1alpha1.AgentSessionSpec{SandboxName: "pool"}}
	}
	admitted := session("admitted", 3*time.Minute)
	meta.SetStatusCondition(&admitted.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.QuotaReserved,
		Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonQuotaReserved})
	waiting := session("waiting", 2*time.Minute)
	bound := session("bound", time.Minute) // no status: the bind's status write was lost
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool-abcde",
		Labels:          map[string]string{agentsv1alpha1.SandboxLabel: "pool", agentsv1alpha1.SessionLabel: "bound"},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(bound, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}}}
	quota := &agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "q"},
		Spec: agentsv1alpha1.AgentQuotaSpec{Hard: agentsv1alpha1.QuotaLimits{Sessions: ptr.To(int32(2))}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(quota, admitted, waiting, bound, pod).
		WithStatusSubresource(&agentsv1alpha1.AgentSession{}).Build()
	q := newQuotaKeeper(c, nil, nil)

	head, limited, err := q.admissibleHead(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	if !limited || len(head) != 0 {
		t.Errorf("admissibleHead = %v (limited %v); want none: admitted and bound fill the quota of 2", head, limited)
	}
}
