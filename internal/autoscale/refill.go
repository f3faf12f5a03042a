package autoscale

import (
	"slices"
	"time"
)

// RefillTimes keeps a class's most recent refill times (warm pod created to Ready) and
// reads a high percentile of them: the model's T. A ring of the last Size samples follows
// a change (a new image, busier nodes) within Size refills. The zero value is unusable:
// set Size.
type RefillTimes struct {
	Size int

	samples []time.Duration
	next    int
}

// Observe adds one refill time.
func (r *RefillTimes) Observe(d time.Duration) {
	if len(r.samples) < r.Size {
		r.samples = append(r.samples, d)
		return
	}
	r.samples[r.next] = d
	r.next = (r.next + 1) % r.Size
}

// Percentile is the p-th percentile (0 < p <= 1, nearest rank) of the kept samples, and
// whether there is any.
func (r *RefillTimes) Percentile(p float64) (time.Duration, bool) {
	if len(r.samples) == 0 {
		return 0, false
	}
	sorted := slices.Clone(r.samples)
	slices.Sort(sorted)
	rank := int(p*float64(len(sorted))+0.999999) - 1 // nearest rank: ceil(p*n), 1-based
	return sorted[min(max(rank, 0), len(sorted)-1)], true
}

// Len is the number of samples kept.
func (r *RefillTimes) Len() int { return len(r.samples) }
