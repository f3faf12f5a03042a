//go:build !windows

package testbed

import "sync"

// Stop hooks: what a test package started on top of the test bed (a manager holding watches,
// say) must stop before the API server does, or the API server waits for those clients
// and its shutdown times out.
var (
	hooksMu     sync.Mutex
	beforeStops = map[*Env][]func(){}
)

// BeforeStop registers fn to run when Main stops env, before any component is stopped.
// Hooks run in reverse order of registration.
func (e *Env) BeforeStop(fn func()) {
	hooksMu.Lock()
	defer hooksMu.Unlock()
	beforeStops[e] = append(beforeStops[e], fn)
}

func (e *Env) runBeforeStop() {
	hooksMu.Lock()
	hooks := beforeStops[e]
	delete(beforeStops, e)
	hooksMu.Unlock()
	for i := len(hooks) - 1; i >= 0; i-- {
		hooks[i]()
	}
}
