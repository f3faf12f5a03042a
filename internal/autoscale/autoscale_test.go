package autoscale

import (
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

func TestWarmNeeded(t *testing.T) {
	// Erlang B table values: B(S, a) is the share of sessions that start cold.
	for _, tc := range []struct {
		load, target float64
		want         int
	}{
		{0, 0.99, 0},
		{0.05, 0.9, 1},   // B(1, 0.05) = 0.0476
		{0.05, 0.99, 2},  // B(1) = 0.0476, B(2) = 0.0012
		{1, 0.9, 3},      // B(2, 1) = 0.2, B(3, 1) = 0.0625
		{1, 0.99, 5},     // B(4, 1) = 0.0154, B(5, 1) = 0.0031
		{5, 0.99, 11},    // B(10, 5) = 0.0184, B(11, 5) = 0.0083
		{10, 0.99, 18},   // B(17, 10) = 0.0129, B(18, 10) = 0.0071
		{100, 0.99, 117}, // B(116, 100) = 0.0106, B(117, 100) = 0.0091
		{0.5, 0.999, 5},  // B(4, 0.5) = 0.0016, B(5, 0.5) = 0.00016
	} {
		if got := WarmNeeded(tc.load, tc.target); got != tc.want {
			t.Errorf("WarmNeeded(%v, %v) = %d, want %d", tc.load, tc.target, got, tc.want)
		}
	}
}

// TestWarmNeededMeetsTheTarget checks, over loads from a quiet night to a burst, that the
// pool meets the target (1 - B(S) >= q) and that one sandbox fewer would not.
func TestWarmNeededMeetsTheTarget(t *testing.T) {
	for _, load := range []float64{0.05, 0.5, 1, 3, 8, 25, 80, 300, 2000} {
		for _, q := range []float64{0.9, 0.95, 0.99, 0.999} {
			s := WarmNeeded(load, q)
			if warm := 1 - erlangB(s, load); warm < q {
				t.Errorf("load %v target %v: a pool of %d serves %.4f warm", load, q, s, warm)
			}
			if warm := 1 - erlangB(s-1, load); s > 0 && warm >= q {
				t.Errorf("load %v target %v: %d is not the smallest, %d serves %.4f", load, q, s, s-1, warm)
			}
		}
	}
}

// TestPoissonQuantileFallsShort is why the model is Erlang's and not the first
// draft: the target quantile of Poisson(λT), checked here against Poisson tables, serves
// fewer than the target at low loads, where a pool spends its nights.
func TestPoissonQuantileFallsShort(t *testing.T) {
	for _, tc := range []struct {
		mean, q float64
		want    int
	}{
		{1, 0.99, 4},   // P(X<=3) = 0.9810, P(X<=4) = 0.9963
		{5, 0.99, 11},  // P(X<=10) = 0.9863, P(X<=11) = 0.9945
		{10, 0.99, 18}, // P(X<=17) = 0.9857, P(X<=18) = 0.9928
	} {
		if got := poissonQuantile(tc.mean, tc.q); got != tc.want {
			t.Fatalf("poissonQuantile(%v, %v) = %d, want %d", tc.mean, tc.q, got, tc.want)
		}
	}
	if s := poissonQuantile(1, 0.99); 1-erlangB(s, 1) >= 0.99 {
		t.Errorf("the Poisson quantile %d at load 1 meets 99%%; the model's note is wrong", s)
	}
	if s, w := poissonQuantile(1, 0.99), WarmNeeded(1, 0.99); w != s+1 {
		t.Errorf("at load 1 the model asks %d, the Poisson quantile %d: expected one more", w, s)
	}
}

func poissonQuantile(mean, q float64) int {
	p := distuv.Poisson{Lambda: mean}
	k := 0
	for p.CDF(float64(k)) < q {
		k++
	}
	return k
}

func erlangB(servers int, load float64) float64 {
	b := 1.0
	for k := 1; k <= servers; k++ {
		b = load * b / (float64(k) + load*b)
	}
	return b
}

func TestBindRateFollowsABurstWithinOneRefillWindow(t *testing.T) {
	const refill = 15 * time.Second
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	rate := &BindRate{Fast: time.Minute, Slow: 20 * time.Minute}
	now := start
	// An hour at 0.1 binds/s: the estimate settles near it.
	for ; now.Before(start.Add(time.Hour)); now = now.Add(10 * time.Second) {
		rate.Observe(now, 1)
	}
	before := WarmNeeded(rate.Rate(now)*refill.Seconds(), 0.99)
	if r := rate.Rate(now); r < 0.08 || r > 0.15 {
		t.Fatalf("steady estimate %.3f binds/s, want about 0.1", r)
	}
	// A burst of 2 binds/s: within one refill window the recommendation must have risen
	// well above the steady one.
	burstStart := now
	for ; now.Before(burstStart.Add(refill)); now = now.Add(500 * time.Millisecond) {
		rate.Observe(now, 1)
	}
	after := WarmNeeded(rate.Rate(now)*refill.Seconds(), 0.99)
	if after < 2*before || after < 10 {
		t.Errorf("need %d before the burst and %d one refill window into it; want it at least doubled and >= 10", before, after)
	}
	// Without binds the estimate decays, but the slow average keeps the hour's level for a
	// while: a minute's lull is not read as no demand.
	if r := rate.Rate(now.Add(time.Minute)); r < 0.1 {
		t.Errorf("a minute after the burst the estimate is %.3f binds/s; the slow average should hold it above the old level", r)
	}
}

// TestBindRateIgnoresALoneBind: one bind in a quiet hour, or two ten seconds apart, are
// not read as a burst; a third within the same ten seconds is.
func TestBindRateIgnoresALoneBind(t *testing.T) {
	night := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	rate := &BindRate{Fast: time.Minute, Slow: 20 * time.Minute}
	rate.Observe(night, 1)
	if r := rate.Rate(night); r > 1.0/(20*60)+1e-9 {
		t.Errorf("one bind reads as %.4f binds/s; want the slow average's 1/1200", r)
	}
	rate.Observe(night.Add(10*time.Second), 1)
	if r := rate.Rate(night.Add(10 * time.Second)); r > 2.0/(20*60)+1e-9 {
		t.Errorf("two binds 10 s apart read as %.4f binds/s; want the slow average's", r)
	}
	rate.Observe(night.Add(10*time.Second), 1)
	if r := rate.Rate(night.Add(10 * time.Second)); r < 2.0/60 {
		t.Errorf("three binds within 10 s read as %.4f binds/s; want the fast average, about 2.8/60", r)
	}
}

func TestStabilizerLowersOnlyAfterTheDelay(t *testing.T) {
	const delay = 5 * time.Minute
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	var s Stabilizer
	for _, step := range []struct {
		after time.Duration
		need  int
		want  int
	}{
		{0, 4, 4},
		{time.Second, 20, 20},                   // up at once
		{time.Minute, 2, 20},                    // a quiet minute: kept
		{3*time.Minute + 59*time.Second, 2, 20}, // 4m59s after the peak: kept
		{time.Second, 2, 2},                     // 5m after the peak: it left the window
		{time.Second, 7, 7},                     // up again at once
		{time.Minute, 5, 7},
		{delay, 3, 3}, // 5 and 7 both older than the delay
	} {
		now = now.Add(step.after)
		if got := s.Recommend(now, step.need, delay); got != step.want {
			t.Fatalf("at %s need %d: recommended %d, want %d", now.Format(time.TimeOnly), step.need, got, step.want)
		}
	}
	if got := s.Recommend(now, 1, 0); got != 1 {
		t.Errorf("with no delay the need is followed at once: got %d", got)
	}
}

func TestClamp(t *testing.T) {
	for _, tc := range []struct {
		name      string
		need      int
		b         Bounds
		want      int
		wantLimit Limit
	}{
		{"inside", 5, Bounds{Min: 1, Max: 10, Quota: -1}, 5, LimitNone},
		{"raised to min", 0, Bounds{Min: 2, Max: 10, Quota: -1}, 2, LimitMinReplicas},
		{"cut to max", 50, Bounds{Min: 2, Max: 10, Quota: -1}, 10, LimitMaxReplicas},
		{"schedule min", 0, Bounds{Min: 6, Max: 10, MinFromSchedule: true, Quota: -1}, 6, LimitScheduleMinReplicas},
		{"schedule max", 50, Bounds{Min: 0, Max: 3, MaxFromSchedule: true, Quota: -1}, 3, LimitScheduleMaxReplicas},
		{"quota under max", 50, Bounds{Min: 0, Max: 10, Quota: 4}, 4, LimitQuota},
		{"quota under min", 0, Bounds{Min: 6, Max: 10, Quota: 4}, 4, LimitQuota},
		{"quota not reached", 3, Bounds{Min: 0, Max: 10, Quota: 4}, 3, LimitNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, limit := Clamp(tc.need, tc.b)
			if got != tc.want || limit != tc.wantLimit {
				t.Errorf("Clamp(%d, %+v) = %d, %s; want %d, %s", tc.need, tc.b, got, limit, tc.want, tc.wantLimit)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, paris) }
	for _, tc := range []struct {
		name       string
		start, end string
		t          time.Time
		active     bool
		nextChange time.Time
	}{
		{"business hours, inside", "0 8 * * 1-5", "0 18 * * 1-5", at(2026, 11, 30, 9, 0), true, at(2026, 11, 30, 18, 0)},
		{"business hours, at the opening", "0 8 * * 1-5", "0 18 * * 1-5", at(2026, 11, 30, 8, 0), true, at(2026, 11, 30, 18, 0)},
		{"business hours, at the closing", "0 8 * * 1-5", "0 18 * * 1-5", at(2026, 11, 30, 18, 0), false, at(2026, 12, 1, 8, 0)},
		{"business hours, a Saturday", "0 8 * * 1-5", "0 18 * * 1-5", at(2026, 12, 5, 10, 0), false, at(2026, 12, 7, 8, 0)},
		{"night, before midnight", "0 22 * * *", "0 6 * * *", at(2026, 11, 30, 23, 30), true, at(2026, 12, 1, 6, 0)},
		{"night, after midnight", "0 22 * * *", "0 6 * * *", at(2026, 12, 1, 5, 59), true, at(2026, 12, 1, 6, 0)},
		{"night, the day", "0 22 * * *", "0 6 * * *", at(2026, 12, 1, 12, 0), false, at(2026, 12, 1, 22, 0)},
		// Spring forward (29 March 2026, 02:00 -> 03:00): the window still opens at 08:00
		// local time, which is 06:00 UTC that day instead of 07:00.
		{"DST spring, 08:30 local", "0 8 * * *", "0 18 * * *", at(2026, 3, 29, 8, 30), true, at(2026, 3, 29, 18, 0)},
		{"DST spring, 07:30 local", "0 8 * * *", "0 18 * * *", time.Date(2026, 3, 29, 5, 30, 0, 0, time.UTC), false, time.Date(2026, 3, 29, 6, 0, 0, 0, time.UTC)},
		// Fall back (25 October 2026, 03:00 -> 02:00): the night window closes at 06:00
		// local, nine hours of elapsed time after it opened instead of eight.
		{"DST fall, night", "0 22 * * *", "0 6 * * *", at(2026, 10, 24, 22, 0), true, time.Date(2026, 10, 25, 5, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ParseWindow(tc.start, tc.end, "Europe/Paris")
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Active(tc.t); got != tc.active {
				t.Errorf("Active(%s) = %v, want %v", tc.t, got, tc.active)
			}
			if got := w.NextChange(tc.t); !got.Equal(tc.nextChange) {
				t.Errorf("NextChange(%s) = %s, want %s", tc.t, got, tc.nextChange)
			}
		})
	}
}

func TestParseWindowRejects(t *testing.T) {
	for _, tc := range []struct{ start, end, tz string }{
		{"0 8 * * 1-5", "0 18 * * 1-5", "Mars/Olympus"},
		{"8am", "0 18 * * *", ""},
		{"@every 1h", "0 18 * * *", ""},
		{"0 8 * * *", "0 0 18 * * *", ""}, // six fields
	} {
		if _, err := ParseWindow(tc.start, tc.end, tc.tz); err == nil {
			t.Errorf("ParseWindow(%q, %q, %q) accepted", tc.start, tc.end, tc.tz)
		}
	}
}

func TestRefillTimesPercentile(t *testing.T) {
	r := &RefillTimes{Size: 4}
	if _, ok := r.Percentile(0.9); ok {
		t.Fatal("a percentile of no samples")
	}
	for _, d := range []time.Duration{1, 9, 3, 5, 100, 2} { // 1 and 9 are pushed out
		r.Observe(d * time.Second)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 3 * time.Second}, {0.9, 100 * time.Second}, {0.25, 2 * time.Second}} {
		if got, _ := r.Percentile(tc.p); got != tc.want {
			t.Errorf("p%v = %s, want %s (kept %v)", tc.p*100, got, tc.want, r.samples)
		}
	}
}
