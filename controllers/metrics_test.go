package controllers

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
)

// TestForgetSandboxSeries: a deleted class leaves no series behind, and another class's
// stay. A namespace churning through classes must not grow the manager without limit.
func TestForgetSandboxSeries(t *testing.T) {
	gone := types.NamespacedName{Namespace: "metrics-test", Name: "gone"}
	kept := types.NamespacedName{Namespace: "metrics-test", Name: "kept"}
	for _, key := range []types.NamespacedName{gone, kept} {
		readyWarmPods.WithLabelValues(key.Namespace, key.Name).Set(1)
		vmMemoryBytes.WithLabelValues(key.Namespace, key.Name).Set(1)
		bindDuration.WithLabelValues(key.Namespace, key.Name, "Warm").Observe(0.01)
		sessionExpirations.WithLabelValues(key.Namespace, key.Name, "MaxLifetime").Inc()
		podCreations.WithLabelValues(key.Namespace, key.Name, "Cold").Inc()
	}
	before := testutil.CollectAndCount(bindDuration) + testutil.CollectAndCount(podCreations)
	forgetSandboxSeries(gone)
	if got := testutil.CollectAndCount(bindDuration) + testutil.CollectAndCount(podCreations); got != before-2 {
		t.Errorf("bind and creation series: %d after forgetting one class, want %d", got, before-2)
	}
	if v := testutil.ToFloat64(readyWarmPods.WithLabelValues(kept.Namespace, kept.Name)); v != 1 {
		t.Errorf("the kept class's warm gauge = %v, want 1", v)
	}
	for _, vec := range []interface {
		DeleteLabelValues(...string) bool
	}{readyWarmPods, vmMemoryBytes} {
		if vec.DeleteLabelValues(gone.Namespace, gone.Name) {
			t.Errorf("a gauge series of the forgotten class was still there")
		}
	}
	if sessionExpirations.DeleteLabelValues(gone.Namespace, gone.Name, "MaxLifetime") {
		t.Error("an expiration series of the forgotten class was still there")
	}
}
