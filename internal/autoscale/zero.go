package autoscale

import (
	"math"
	"time"
)

// ZeroDemandEpsilon is the number of binds expected within scaleDownDelay below which a
// pool needs no warm sandbox at all. Erlang's formula asks for at least one at any load
// above 0, and the bind rate's averages decay without ever reaching 0, so without a floor
// under the rate a pool with minReplicas 0 would hold one idle VM all night.
//
// Why 0.05: a warm sandbox kept for one scaleDownDelay at this rate is taken with a chance
// of about 5% (1 - e^-0.05), so 95% of such VM-time is idle memory bought for nothing,
// while the session it would have served starts cold once in twenty delays. Below it, the
// VM costs more than the cold start it saves: at scaleDownDelay 5m, one warm hit would
// cost about 100 VM-minutes of 1 to 4 GB. The bound is low enough that a class used every
// few scaleDownDelays (a bind every 10 minutes at 5m) keeps its sandbox.
const ZeroDemandEpsilon = 0.05

// ExpectedBinds is how many binds the estimate expects within the next `within` (the
// pool's scaleDownDelay) at time t: the rate times `within`, discounted by the chance that
// binds at the slow average's rate would have left the silence since the last bind,
// e^-(the binds the slow average expected over that silence).
//
// The discount is what lets a pool reach zero after its last session: the slow average
// alone takes hours to forget a busy hour (20 minutes per factor e), but an hour at λ
// binds per second leaves a silence of q seconds with a chance of about e^(-λq), so after
// a busy hour the expectation falls under ZeroDemandEpsilon within ln(λ·delay/ε)/λ
// seconds of silence: the busier the hour, the sooner its end is certain. Steady traffic
// is not discounted away: its silences are about 1/λ long, a discount of about e^-1. The
// exponent is the integral of the decaying average, not rate × silence, so the discount
// only grows with the silence and a pool that reached zero stays there until a bind.
func (b *BindRate) ExpectedBinds(t time.Time, within time.Duration) float64 {
	rate := b.Rate(t)
	if rate <= 0 {
		return 0
	}
	return rate * within.Seconds() * math.Exp(-b.silenceExpected(t))
}

// silenceExpected is the number of binds the slow average expected between the last bind
// and t: its value at that bind, integrated as it decays.
func (b *BindRate) silenceExpected(t time.Time) float64 {
	quiet := t.Sub(b.lastBind).Seconds()
	if b.lastBind.IsZero() || quiet <= 0 {
		return 0
	}
	tau := b.Slow.Seconds()
	atLastBind := b.slow * math.Exp(b.last.Sub(b.lastBind).Seconds()/tau)
	return atLastBind * tau * (1 - math.Exp(-quiet/tau))
}

// Need is the model's need at rate (binds per second) with the refill time refill: the
// smallest pool that serves a share target warm (WarmNeeded at λT), or none when fewer
// than ZeroDemandEpsilon binds are expected within the scale-down delay (expected, from
// ExpectedBinds). Sessions already waiting for the class are added by the caller: they
// need a sandbox whatever the rate.
func Need(rate float64, refill time.Duration, target, expected float64) int {
	if expected < ZeroDemandEpsilon {
		return 0
	}
	return WarmNeeded(rate*refill.Seconds(), target)
}
