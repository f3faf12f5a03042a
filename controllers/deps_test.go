package controllers

import (
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// unitDeps are a reconciler's dependencies for a unit test: a (fake) client that also
// reads around the cache, the default configuration, the given clock, and a recorder that
// keeps the last hundred events.
func unitDeps(c client.Client, clk clock.PassiveClock) reconcilerDeps {
	return reconcilerDeps{client: c, apiReader: c, config: DefaultConfig(), clock: clk,
		recorder: func(string) recorder.EventRecorder { return events.NewFakeRecorder(100) }}
}
