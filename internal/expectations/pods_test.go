package expectations

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestExpectations(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	e := NewPods(clk)
	key := types.NamespacedName{Namespace: "ns", Name: "pool"}

	in := func(names ...string) func(string) bool {
		return func(n string) bool { return slices.Contains(names, n) }
	}
	e.Created(key, "a")
	e.Created(key, "b")
	e.Created(key, "c")
	e.Deleted(key, "old")
	e.Deleted(key, "older")
	creations, deletions := e.Pending(key, in("old", "older"), in("old", "older"))
	if len(creations) != 3 || len(deletions) != 2 {
		t.Fatalf("before anything is seen: creations %v, deletions %v", creations, deletions)
	}
	// Events: "a" appears (already bound), "old" starts terminating.
	e.Seen(key, "a", true, false)
	e.Seen(key, "old", true, false)
	creations, deletions = e.Pending(key, in("old", "older"), in("old", "older"))
	if len(creations) != 2 || creations["a"] || deletions["old"] || !deletions["older"] {
		t.Fatalf("after the events: creations %v, deletions %v; want b and c, and older", creations, deletions)
	}
	// An event that came before Created was called: the book shows "c", so it is not pending.
	creations, _ = e.Pending(key, in("c"), in())
	if len(creations) != 1 || !creations["b"] {
		t.Fatalf("with c in the book: creations %v, want only b", creations)
	}
	// A creation never seen is forgotten after the TTL, so a lost event cannot freeze a pool.
	clk.SetTime(now.Add(TTL + time.Second))
	if creations, _ = e.Pending(key, in(), in()); len(creations) != 0 {
		t.Fatalf("after the TTL: creations %v", creations)
	}
}
