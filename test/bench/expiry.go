//go:build !windows

package bench

import "fmt"

// expiryLags measures the expiry scenario's sessions against their true deadlines: for
// each session seen finished, in milliseconds, when the watch saw it finished minus the
// bind plus the max lifetime it asked for. Sessions seen finished before that deadline
// are counted in early (their lag is negative); notes say what could not be measured as
// it should.
//
// The bind is the manager's stored status.preciseBoundTime (to the microsecond), never
// the whole-second status.boundTime or status.expiryTime, which were rounded and hid up
// to 2 s of lag. It is checked against what the benchmark saw itself: a stored bind later
// than the watch first saw the session bound cannot be true, and the sighting is taken
// instead, so the deadline is never later than the truth. A session with no precise bind
// (a manager older than the field) counts from its create call's start, which precedes
// the bind: its lag can only be overstated.
func expiryLags(r *run) (lags []float64, early int, notes []string) {
	var laterThanSeen, noPrecise int
	for _, name := range r.order {
		s := r.h.track.sessions[key(r.ns, name)]
		if s == nil || s.finishedAt.IsZero() {
			continue
		}
		bind := s.preciseBound
		switch {
		case bind.IsZero():
			noPrecise++
			bind = r.starts[name]
		case !s.boundSeenAt.IsZero() && bind.After(s.boundSeenAt):
			laterThanSeen++
			bind = s.boundSeenAt
		}
		lag := s.finishedAt.Sub(bind.Add(r.lives[name]))
		if lag < 0 {
			early++
		}
		lags = append(lags, ms(lag))
	}
	if laterThanSeen > 0 {
		notes = append(notes, fmt.Sprintf("%d sessions stored a bind time later than the watch first saw them bound; their lag counts from that sighting", laterThanSeen))
	}
	if noPrecise > 0 {
		notes = append(notes, fmt.Sprintf("%d sessions had no status.preciseBoundTime; their lag counts from the create call's start", noPrecise))
	}
	return lags, early, notes
}
