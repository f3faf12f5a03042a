package testbed

import (
	"context"
	"sync"
)

// Notifier is a mutex that waiters can block on until a condition over the guarded state
// holds: watch handlers record what they saw under Lock and call Changed before Unlock;
// WaitUntil re-checks its condition after every change. The zero value is ready to use.
type Notifier struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change; nil until someone waits
}

// Lock locks the guarded state.
func (n *Notifier) Lock() { n.mu.Lock() }

// Unlock unlocks the guarded state.
func (n *Notifier) Unlock() { n.mu.Unlock() }

// Changed wakes every waiter to check its condition again. The lock must be held.
func (n *Notifier) Changed() {
	if n.changed != nil {
		close(n.changed)
		n.changed = nil
	}
}

// WaitUntil blocks until cond, called with the lock held, returns true, or ctx ends.
func (n *Notifier) WaitUntil(ctx context.Context, cond func() bool) error {
	for {
		n.mu.Lock()
		ok := cond()
		if n.changed == nil {
			n.changed = make(chan struct{})
		}
		ch := n.changed
		n.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
