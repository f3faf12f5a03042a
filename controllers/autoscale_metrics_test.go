package controllers

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestIdleMemoryIntegratesOverTime: the counter is the warm memory integrated over time,
// current at scrape time (no reconcile needed to move it).
func TestIdleMemoryIntegratesOverTime(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	c := &idleMemoryCollector{clock: clk, pools: map[types.NamespacedName]*idleMemory{},
		desc: prometheus.NewDesc("idle_test", "test", []string{"namespace", "sandbox"}, nil)}
	key := types.NamespacedName{Namespace: "ns", Name: "pool"}
	const gib = 1 << 30
	for _, step := range []struct {
		advance time.Duration
		set     float64 // -1: scrape only
		want    float64 // byte-seconds at the scrape after the step
	}{
		{0, 2 * gib, 0},
		{10 * time.Second, -1, 20 * gib}, // 2 GiB for 10 s, seen without a set
		{5 * time.Second, 1 * gib, 30 * gib},
		{4 * time.Second, 0, 34 * gib},
		{time.Hour, -1, 34 * gib}, // nothing idle: no growth
	} {
		clk.SetTime(clk.Now().Add(step.advance))
		if step.set >= 0 {
			c.set(key, step.set)
		}
		if got := testutil.ToFloat64(c); got != step.want {
			t.Fatalf("at %s: %v GiB·s, want %v", clk.Now().Format(time.TimeOnly), got/gib, step.want/gib)
		}
	}
}
