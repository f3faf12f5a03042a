package expectations

import (
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

	e.Created(key, "a")
	e.Created(key, "b")
	e.Deleted(key, "old")
	creations, deletions := e.Observe(key, map[string]bool{"old": true}, map[string]bool{"old": true})
	if len(creations) != 2 || !deletions["old"] {
		t.Fatalf("before the cache catches up: creations %v, deletions %v", creations, deletions)
	}
	// The cache shows "a" (already bound: present, not warm) and "old" gone.
	creations, deletions = e.Observe(key, map[string]bool{"a": true}, map[string]bool{})
	if len(creations) != 1 || !creations["b"] || len(deletions) != 0 {
		t.Fatalf("after: creations %v, deletions %v; want only b", creations, deletions)
	}
	// A creation never seen is forgotten after the TTL, so a lost event cannot freeze a pool.
	clk.SetTime(now.Add(TTL + time.Second))
	if creations, _ = e.Observe(key, nil, nil); len(creations) != 0 {
		t.Fatalf("after the TTL: creations %v", creations)
	}
}
