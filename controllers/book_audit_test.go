package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/hyperpool/hyperpool/internal/poolbook"
	"github.com/hyperpool/hyperpool/test/builders"
)

// The audit finds a book that missed a pod's creation and one that missed a deletion,
// counts them, warns on the class, and leaves the book as the cache shows it; a book that
// agrees is left alone.
func TestBookAuditFindsAndRepairsDrift(t *testing.T) {
	sb := builders.AgentSandbox("team", "pool").Obj()
	sb.UID = "class-uid"
	seen, missed, ghost := classPod(t, sb, "seen"), classPod(t, sb, "missed"), classPod(t, sb, "ghost")
	for _, p := range []*corev1.Pod{seen, missed, ghost} {
		p.Namespace = "team"
	}
	c := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(sb, seen.DeepCopy(), missed.DeepCopy()).Build()
	book := poolbook.New()
	rec := events.NewFakeRecorder(10)
	a := &bookAudit{book: book, reader: c, recorder: rec, settle: time.Millisecond}
	listed := func() []corev1.Pod {
		pods := &corev1.PodList{}
		if err := c.List(context.Background(), pods); err != nil {
			t.Fatal(err)
		}
		return pods.Items
	}
	for _, p := range listed() { // the book as the informer fed it, resourceVersions included
		if p.Name == "seen" {
			book.Update(&p)
		}
	}
	book.Update(ghost) // deleted while the book was not looking

	before := testutil.ToFloat64(bookDrift)
	drift, err := a.audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"class team/pool: pod missed is listed but not in the book", "class team/pool: pod ghost is in the book but not listed"} {
		if !slices.ContainsFunc(drift, func(d string) bool { return strings.HasPrefix(d, want) }) {
			t.Errorf("the audit did not report %q; it reported %q", want, drift)
		}
	}
	if got := testutil.ToFloat64(bookDrift) - before; got != float64(len(drift)) {
		t.Errorf("hyperpool_pool_book_drift_total rose by %v, want %d", got, len(drift))
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "Warning "+reasonPoolBookDrift) {
			t.Errorf("event %q, want a Warning %s", e, reasonPoolBookDrift)
		}
	default:
		t.Error("no Event on the class")
	}
	if diffs := book.Diff(listed()); len(diffs) > 0 {
		t.Errorf("after the audit the book still differs: %q", diffs)
	}
	if drift, err := a.audit(context.Background()); err != nil || len(drift) > 0 {
		t.Errorf("a second audit found %q (%v), want nothing", drift, err)
	}
}
