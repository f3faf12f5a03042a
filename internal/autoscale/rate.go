package autoscale

import (
	"math"
	"time"
)

// BindRate estimates a class's bind rate λ (binds per second) from the times of its
// binds, with two exponentially decaying averages: a fast one (time constant Fast) that
// follows a burst within a minute, and a slow one (Slow) that remembers the hour's level,
// so one quiet minute between bursts does not read as no demand. The estimate is the
// larger of the two, except that the fast average counts only once it holds at least
// minFastBinds binds: one bind in a quiet night is no burst, and read as one it would ask
// for a pool of several sandboxes for the next scaleDownDelay (the day benchmark's first
// run spent a third of its idle memory on such single binds). The zero value is unusable:
// set Fast and Slow.
//
// A decaying average of events is a count that decays by e^(-dt/tau) and gains 1/tau per
// event: after a step to rate r it reads r(1 - e^(-t/tau)) t seconds later, 63% of r after
// one tau, with no window of samples to keep.
type BindRate struct {
	Fast, Slow time.Duration

	fast, slow float64 // binds per second, as of last
	last       time.Time
	lastBind   time.Time // the last observation with n > 0
}

// Observe records n binds at time t. Times before the last observation count as the last.
func (b *BindRate) Observe(t time.Time, n int) {
	b.decayTo(t)
	if n > 0 {
		b.lastBind = b.last
	}
	b.fast += float64(n) / b.Fast.Seconds()
	b.slow += float64(n) / b.Slow.Seconds()
}

// Rate is the estimate at time t, in binds per second.
func (b *BindRate) Rate(t time.Time) float64 {
	dt := t.Sub(b.last).Seconds()
	if b.last.IsZero() || dt < 0 {
		dt = 0
	}
	fast := b.fast * math.Exp(-dt/b.Fast.Seconds())
	if fast*b.Fast.Seconds() < minFastBinds {
		fast = 0
	}
	return max(fast, b.slow*math.Exp(-dt/b.Slow.Seconds()))
}

// minFastBinds is how many binds the fast average must hold (its decayed count) before it
// speaks: two binds within about one Fast.
const minFastBinds = 2

func (b *BindRate) decayTo(t time.Time) {
	if !b.last.IsZero() {
		if dt := t.Sub(b.last).Seconds(); dt > 0 {
			b.fast *= math.Exp(-dt / b.Fast.Seconds())
			b.slow *= math.Exp(-dt / b.Slow.Seconds())
		}
	}
	if t.After(b.last) {
		b.last = t
	}
}
