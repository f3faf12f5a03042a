//go:build !windows

package testbed

import (
	"slices"
	"testing"
)

// BeforeStop registers fn to run when the test bed stops (from Main, on a signal, or by a
// direct Stop), before any component is stopped. What a test package started on top of
// the test bed, a manager holding watches say, must stop before the API server does, or
// the API server waits for those clients and its shutdown times out. Hooks run in reverse
// order of registration.
func (e *Env) BeforeStop(fn func()) {
	e.hooksMu.Lock()
	defer e.hooksMu.Unlock()
	e.beforeStop = append(e.beforeStop, fn)
}

// runBeforeStop runs and forgets the BeforeStop hooks.
func (e *Env) runBeforeStop() {
	e.hooksMu.Lock()
	hooks := e.beforeStop
	e.beforeStop = nil
	e.hooksMu.Unlock()
	for i := len(hooks) - 1; i >= 0; i-- {
		hooks[i]()
	}
}

// AfterEachTest adds a check run at the end of every test that made a namespace with
// CreateNamespace, with the test and its namespace, before the namespace is deleted: the
// framework compares what the manager keeps in memory with the cluster there.
func (e *Env) AfterEachTest(fn func(t testing.TB, namespace string)) {
	e.hooksMu.Lock()
	defer e.hooksMu.Unlock()
	e.afterEachTest = append(e.afterEachTest, fn)
}

// runAfterEachTest runs the AfterEachTest checks for one test's namespace.
func (e *Env) runAfterEachTest(t testing.TB, namespace string) {
	e.hooksMu.Lock()
	checks := slices.Clone(e.afterEachTest)
	e.hooksMu.Unlock()
	for _, check := range checks {
		check(t, namespace)
	}
}
