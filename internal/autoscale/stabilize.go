package autoscale

import "time"

// Stabilizer is the hysteresis against flapping: a pool grows as soon as the model asks
// for more, and shrinks only to the largest need seen over the last delay, so a quiet
// minute between two bursts does not give the sandboxes back (and boot them again). It
// is the HorizontalPodAutoscaler's scale-down stabilisation window.
type Stabilizer struct {
	history []sample
}

type sample struct {
	at   time.Time
	need int
}

// Recommend records need at now and returns the largest need recorded within delay
// before now.
func (s *Stabilizer) Recommend(now time.Time, need int, delay time.Duration) int {
	keep := s.history[:0]
	for _, h := range s.history {
		if now.Sub(h.at) < delay && h.need > need {
			keep = append(keep, h)
		}
	}
	// Samples no larger than the new need can never be the maximum again: drop them, so
	// the history stays a short decreasing run.
	keep = append(keep, sample{at: now, need: need})
	s.history = keep
	out := need
	for _, h := range s.history {
		out = max(out, h.need)
	}
	return out
}

// Empty says whether nothing was recorded yet.
func (s *Stabilizer) Empty() bool { return len(s.history) == 0 }

// NextDrop is when the recommendation can next fall (the oldest sample larger than the
// latest leaves the window), or the zero time when it cannot.
func (s *Stabilizer) NextDrop(delay time.Duration) time.Time {
	if len(s.history) < 2 {
		return time.Time{}
	}
	return s.history[0].at.Add(delay)
}
