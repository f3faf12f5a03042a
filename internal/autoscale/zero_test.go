package autoscale

import (
	"testing"
	"time"
)

// The production defaults: a one-minute rate window (the slow average twenty of them), a
// 20 s refill, warmHitTarget 0.99.
const (
	window = time.Minute
	refill = 20 * time.Second
	target = 0.99
)

// pool replays what the manager does for one class on a fake clock: binds feed the rate,
// and every window/6 the need goes through the stabilizer, as controllers/autoscale.go
// polls while the need is above zero.
type pool struct {
	rate  BindRate
	stab  Stabilizer
	delay time.Duration
	now   time.Time
}

func newPool(delay time.Duration, start time.Time) *pool {
	return &pool{rate: BindRate{Fast: window, Slow: 20 * window}, delay: delay, now: start}
}

// run advances the clock to until, one bind every `every` (0: none), and calls see with
// each recommendation.
func (p *pool) run(until time.Time, every time.Duration, see func(now time.Time, need, recommended int)) {
	const step = window / 6
	nextBind := p.now
	for ; !p.now.After(until); p.now = p.now.Add(step) {
		for every > 0 && !nextBind.After(p.now) {
			p.rate.Observe(nextBind, 1)
			nextBind = nextBind.Add(every)
		}
		need, rec := p.decide()
		see(p.now, need, rec)
	}
}

func (p *pool) bind() { p.rate.Observe(p.now, 1) }

func (p *pool) decide() (need, recommended int) {
	need = Need(p.rate.Rate(p.now), refill, target, p.rate.ExpectedBinds(p.now, p.delay))
	return need, p.stab.Recommend(p.now, need, p.delay)
}

// TestPoolReachesZeroAfterTheLastBind: after a busy hour and its last bind, the
// recommendation is 0 within scaleDownDelay plus one rate window, and stays 0 through the
// night; without the zero-demand rule the model would still ask for a sandbox at dawn.
func TestPoolReachesZeroAfterTheLastBind(t *testing.T) {
	start := time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		every time.Duration // the busy hour's spacing of binds
		delay time.Duration
	}{
		{"12 a minute, 5m delay", 5 * time.Second, 5 * time.Minute},
		{"one a second, 5m delay", time.Second, 5 * time.Minute},
		{"five a second, 5m delay", 200 * time.Millisecond, 5 * time.Minute},
		{"one a second, 1m delay", time.Second, time.Minute},
		{"one a second, 30m delay", time.Second, 30 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(tc.delay, start)
			peak := 0
			p.run(start.Add(time.Hour), tc.every, func(_ time.Time, _, rec int) { peak = max(peak, rec) })
			if peak < 1 {
				t.Fatalf("the busy hour never asked for a sandbox")
			}
			lastBind := p.rate.lastBind
			deadline := lastBind.Add(tc.delay + window)
			var zeroAt time.Time
			dawn := lastBind.Add(10 * time.Hour)
			p.run(dawn, 0, func(now time.Time, _, rec int) {
				switch {
				case rec == 0 && zeroAt.IsZero():
					zeroAt = now
				case rec > 0 && !zeroAt.IsZero():
					t.Fatalf("recommended %d at %s after reaching 0 at %s with no bind since %s",
						rec, now.Format(time.TimeOnly), zeroAt.Format(time.TimeOnly), lastBind.Format(time.TimeOnly))
				}
			})
			switch {
			case zeroAt.IsZero():
				t.Fatalf("the recommendation never reached 0 in the ten hours after the last bind (at %s)", lastBind.Format(time.TimeOnly))
			case zeroAt.After(deadline):
				t.Errorf("the recommendation reached 0 at %s, %s after the last bind: want within scaleDownDelay %s plus one window %s",
					zeroAt.Format(time.TimeOnly), zeroAt.Sub(lastBind), tc.delay, window)
			}
			if r := p.rate.Rate(dawn); WarmNeeded(r*refill.Seconds(), target) < 1 {
				t.Errorf("at dawn Erlang's formula alone needs no sandbox (rate %g/s): the test no longer shows the zero-demand rule at work", r)
			}
		})
	}
}

// TestSteadyLowTrafficKeepsASandbox: traffic that expects more than ZeroDemandEpsilon
// binds within scaleDownDelay keeps at least one warm sandbox at every moment, between its
// binds as at them, once the slow average has seen an hour of it.
func TestSteadyLowTrafficKeepsASandbox(t *testing.T) {
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		every, delay time.Duration
	}{
		{10 * time.Minute, 5 * time.Minute}, // λ·delay = 0.5
		{5 * time.Minute, 5 * time.Minute},  // 1
		{time.Minute, 5 * time.Minute},      // 5
		{30 * time.Minute, time.Hour},       // 2
		{2 * time.Minute, time.Minute},      // 0.5
	} {
		t.Run(tc.every.String()+" apart, delay "+tc.delay.String(), func(t *testing.T) {
			if lambdaD := tc.delay.Seconds() / tc.every.Seconds(); lambdaD <= ZeroDemandEpsilon {
				t.Fatalf("λ·delay = %g is not above ZeroDemandEpsilon", lambdaD)
			}
			p := newPool(tc.delay, start)
			steady := start.Add(time.Hour)
			p.run(start.Add(12*time.Hour), tc.every, func(now time.Time, _, rec int) {
				if rec < 1 && !now.Before(steady) {
					t.Fatalf("at %s (a bind every %s) recommended %d: rate %g/s, %g binds expected within %s",
						now.Format(time.TimeOnly), tc.every, rec, p.rate.Rate(now), p.rate.ExpectedBinds(now, tc.delay), tc.delay)
				}
			})
		})
	}
}

// TestALoneBindAfterAQuietNightScalesUp: once the night has brought the pool to 0, a lone
// bind asks for a sandbox again at once, and the pool returns to 0 if no other follows.
func TestALoneBindAfterAQuietNightScalesUp(t *testing.T) {
	const delay = 5 * time.Minute
	start := time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC)
	p := newPool(delay, start)
	p.run(start.Add(time.Hour), time.Second, func(time.Time, int, int) {})
	last := 0
	p.run(start.Add(9*time.Hour), 0, func(_ time.Time, _, rec int) { last = rec })
	if last != 0 {
		t.Fatalf("after an eight-hour night the recommendation is %d, want 0", last)
	}
	p.now = p.now.Add(17 * time.Second)
	p.bind()
	if _, rec := p.decide(); rec < 1 {
		t.Fatalf("a lone bind after the night: recommended %d (rate %g/s, %g binds expected within %s), want at least 1",
			rec, p.rate.Rate(p.now), p.rate.ExpectedBinds(p.now, delay), delay)
	}
	bound := p.now
	var zeroAt time.Time
	p.run(bound.Add(2*time.Hour), 0, func(now time.Time, _, rec int) {
		if rec == 0 && zeroAt.IsZero() {
			zeroAt = now
		}
	})
	if limit := p.rate.Slow + delay + window; zeroAt.IsZero() || zeroAt.Sub(bound) > limit {
		t.Errorf("after the lone bind the pool is back to 0 at %v after it; want within the slow window plus scaleDownDelay plus one window (%s)", zeroAt.Sub(bound), limit)
	}
}

func TestNeedHasAZeroDemandFloor(t *testing.T) {
	for _, tc := range []struct {
		rate, expected float64
		want           int
	}{
		{0, 0, 0},
		{0.001, ZeroDemandEpsilon * 0.99, 0}, // a rate, but under the floor
		{0.001, ZeroDemandEpsilon, WarmNeeded(0.02, target)}, // at the floor: Erlang's answer
		{0.5, 150, WarmNeeded(10, target)},                   // busy
		{0.5, ZeroDemandEpsilon / 2, 0},                      // busy until a long silence
	} {
		if got := Need(tc.rate, refill, target, tc.expected); got != tc.want {
			t.Errorf("Need(rate %g, expected %g) = %d, want %d", tc.rate, tc.expected, got, tc.want)
		}
	}
}

// TestExpectedBindsFallsWithSilence: the expectation is the rate times the delay at a
// bind, and only falls while no bind comes.
func TestExpectedBindsFallsWithSilence(t *testing.T) {
	const delay = 5 * time.Minute
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	r := &BindRate{Fast: window, Slow: 20 * window}
	if e := r.ExpectedBinds(start, delay); e != 0 {
		t.Fatalf("no bind yet: %g binds expected", e)
	}
	now := start
	for ; now.Before(start.Add(time.Hour)); now = now.Add(10 * time.Second) {
		r.Observe(now, 1)
	}
	now = now.Add(-10 * time.Second)
	if e, want := r.ExpectedBinds(now, delay), r.Rate(now)*delay.Seconds(); e != want {
		t.Errorf("at the last bind %g binds expected, want rate × delay = %g", e, want)
	}
	prev := r.ExpectedBinds(now, delay)
	for q := time.Second; q < 24*time.Hour; q += 7 * time.Second {
		e := r.ExpectedBinds(now.Add(q), delay)
		if e > prev {
			t.Fatalf("%s after the last bind the expectation rose from %g to %g", q, prev, e)
		}
		prev = e
	}
}
