package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// takeClock remembers when a session last took a warm sandbox of each pool. It is memory
// only: a new leader starts with none, and its pools refill at once.
type takeClock struct {
	last  sync.Map // types.NamespacedName -> time.Time
	clock clock.PassiveClock
}

func newTakeClock(clk clock.PassiveClock) *takeClock { return &takeClock{clock: clk} }

func (c *takeClock) taken(pool types.NamespacedName) {
	if c != nil {
		c.last.Store(pool, c.clock.Now())
	}
}

func (c *takeClock) forget(pool types.NamespacedName) {
	if c != nil {
		c.last.Delete(pool)
	}
}

func (c *takeClock) since(pool types.NamespacedName) (time.Duration, bool) {
	v, ok := c.last.Load(pool)
	if !ok {
		return 0, false
	}
	return c.clock.Since(v.(time.Time)), true
}
