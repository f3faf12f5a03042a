// Package autoscale is the model that sizes a warm pool by demand, in one place: how many
// warm sandboxes a pool needs so that a share warmHitTarget of its sessions find one Ready,
// from two measured inputs and the limits around them.
//
//   - T, the refill time: how long a new warm pod takes from creation to Ready, a recent
//     high percentile of the class's own pods (RefillTimes).
//   - λ, the bind rate: sessions per second taking a sandbox of the class, a decaying
//     average that follows a burst within seconds and forgets slowly (BindRate).
//
// Every bind takes a warm sandbox and starts its replacement, which is Ready T later. The
// pool runs dry when more sessions arrive within one refill window than it holds; those
// arrivals are about Poisson(λT). The pool therefore needs the warmHitTarget quantile of
// Poisson(λT) (PoissonQuantile), or none when fewer than ZeroDemandEpsilon binds are
// expected within scaleDownDelay (Need, ExpectedBinds: the rate, discounted by the silence
// since the last bind), plus the sessions already waiting for the class, clamped by the
// pool's limits (Clamp). It grows at once and shrinks only when the need has stayed
// lower for scaleDownDelay (Stabilizer). Schedules (Window) replace the limits during
// windows of wall-clock time.
//
// Everything here is pure: time comes in as arguments, so tests drive it with a fake clock.
package autoscale
