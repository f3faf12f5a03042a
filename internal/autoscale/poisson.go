package autoscale

import "math"

// WarmNeeded is the smallest pool that serves a share target of sessions warm when
// sessions arrive at random (Poisson) with load = λT binds per refill window, each bind
// taking a warm sandbox and starting its replacement.
//
// Such a pool is a loss system: its S sandboxes are S "servers", each busy while its
// replacement boots, and a session that finds all S booting starts cold (it does not wait
// and starts no refill). The share it serves warm is 1 - B(S, λT), with B Erlang's loss
// formula, which holds whatever the distribution of the refill time (Erlang's
// insensitivity). This is the exact answer to "binds during one refill window are about
// Poisson(λT)": the plain warmHitTarget quantile of Poisson(λT) counts binds per window,
// not sessions served, and falls short when the load is low (a pool of 4 at λT = 1 serves
// 98.5%, not 99%; see TestPoissonQuantileFallsShort).
//
// target is clamped to [0, 1); load <= 0 needs nothing.
func WarmNeeded(load, target float64) int {
	if load <= 0 || target <= 0 || math.IsNaN(load) || math.IsNaN(target) {
		return 0
	}
	allowed := 1 - min(target, 1-1e-9) // the share that may start cold
	// B(0) = 1; B(k) = load*B(k-1) / (k + load*B(k-1)), stable for any load.
	b := 1.0
	s := 0
	for b > allowed {
		s++
		b = load * b / (float64(s) + load*b)
	}
	return s
}
