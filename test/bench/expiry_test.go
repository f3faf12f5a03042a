//go:build !windows

package bench

import (
	"slices"
	"testing"
	"time"
)

// TestExpiryLagsCountFromTheTrueDeadline: the expiry lag is measured from the stored
// precise bind plus the max lifetime, whatever status.expiryTime showed (it was rounded
// up twice and hid up to 2 s); a session seen ended before that deadline is an early
// expiry; a stored bind later than the watch saw the bind, or none at all, never makes
// the deadline later than the truth.
func TestExpiryLagsCountFromTheTrueDeadline(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	const life = 3500 * time.Millisecond
	for _, tc := range []struct {
		name      string
		obs       sessionObs
		start     time.Time // the create call's start
		wantLagMS float64
		wantEarly int
		wantNotes int
	}{
		{"ended 250 ms after bind + maxLifetime", sessionObs{preciseBound: t0.Add(100 * time.Millisecond),
			boundSeenAt: t0.Add(120 * time.Millisecond), finishedAt: t0.Add(3850 * time.Millisecond)}, t0, 250, 0, 0},
		{"ended before bind + maxLifetime: early", sessionObs{preciseBound: t0.Add(100 * time.Millisecond),
			boundSeenAt: t0.Add(120 * time.Millisecond), finishedAt: t0.Add(3500 * time.Millisecond)}, t0, -100, 1, 0},
		{"a stored bind after the watch saw it: the sighting counts", sessionObs{preciseBound: t0.Add(time.Second),
			boundSeenAt: t0.Add(200 * time.Millisecond), finishedAt: t0.Add(4 * time.Second)}, t0, 300, 0, 1},
		{"no precise bind: the create call's start counts", sessionObs{boundSeenAt: t0.Add(200 * time.Millisecond),
			finishedAt: t0.Add(4 * time.Second)}, t0.Add(50 * time.Millisecond), 450, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &run{h: &Harness{track: newTracker()}, ns: "ns", order: []string{"s-0000", "s-0001"},
				starts: map[string]time.Time{"s-0000": tc.start}, lives: map[string]time.Duration{"s-0000": life}}
			obs := tc.obs
			r.h.track.sessions[key("ns", "s-0000")] = &obs
			r.h.track.sessions[key("ns", "s-0001")] = &sessionObs{} // not seen finished: not measured
			lags, early, notes := expiryLags(r)
			if !slices.Equal(lags, []float64{tc.wantLagMS}) || early != tc.wantEarly || len(notes) != tc.wantNotes {
				t.Errorf("lags %v ms, %d early, notes %q; want [%g] ms, %d early, %d notes", lags, early, notes, tc.wantLagMS, tc.wantEarly, tc.wantNotes)
			}
		})
	}
}
