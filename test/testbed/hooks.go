//go:build !windows

package testbed

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
