//go:build !windows

package bench

import (
	"bytes"
	"image/png"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDayTrace: the trace is the seed's alone, follows the diurnal curve (a quiet night,
// busy business hours) and carries its bursts.
func TestDayTrace(t *testing.T) {
	o := DefaultDayOptions()
	a, bursts := NewDayTrace(o)
	b, _ := NewDayTrace(o)
	if !slices.Equal(a.Arrivals, b.Arrivals) || !slices.Equal(a.Lifetimes, b.Lifetimes) {
		t.Fatal("two traces of one seed differ")
	}
	o.Seed++
	if c, _ := NewDayTrace(o); slices.Equal(a.Arrivals, c.Arrivals) {
		t.Fatal("another seed gave the same trace")
	}
	perHour := make([]int, 24)
	for i, at := range a.Arrivals {
		perHour[int(at.Hours())]++
		if l := a.Lifetimes[i]; l < 2*time.Minute || l > 2*time.Hour {
			t.Fatalf("lifetime %s outside [2m, 2h]", l)
		}
	}
	night, day := perHour[2]+perHour[3]+perHour[4], perHour[9]+perHour[10]+perHour[11]
	if night > 30 || day < 90 {
		t.Errorf("sessions 02-05h %d (want a quiet night, about 9) and 09-12h %d (want about 120+): %v", night, day, perHour)
	}
	inBursts := 0
	for _, at := range a.Arrivals {
		for _, bu := range bursts {
			if at >= bu.at && at < bu.at+bu.length {
				inBursts++
			}
		}
	}
	if inBursts < 60 {
		t.Errorf("%d sessions in the bursts, want about 95", inBursts)
	}
}

// TestDayReport: the report renders its table and a PNG from a small made-up day.
func TestDayReport(t *testing.T) {
	r := &DayReport{Options: DefaultDayOptions(), Sessions: 3, VMMemoryGiB: 1, ArrivalsPH: make([]int, 24), SizingRefill: time.Minute}
	r.ArrivalsPH[9] = 3
	for _, p := range []DayPolicyResult{
		{Policy: "fixed-peak", Replicas: 4, Sessions: 3, Warm: 3, WarmHitRatio: 1, IdleGBHours: 96, PeakWarm: 4},
		{Policy: "fixed-average", Replicas: 1, Sessions: 3, Warm: 1, Cold: 2, WarmHitRatio: 1.0 / 3, IdleGBHours: 24, PeakWarm: 1},
		{Policy: "autoscaling", Sessions: 3, Warm: 3, WarmHitRatio: 1, IdleGBHours: 30, PeakWarm: 3},
	} {
		p.ColdPerHour = make([]int, 24)
		p.Warmth = []int{1, 2, 3, 2}
		r.Policies = append(r.Policies, p)
	}
	md := r.Markdown()
	for _, want := range []string{"| autoscaling | spec.autoscaling | 3 | 100.00% (3/3)", "| 31% |", "| fixed-average | 1 warm |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var buf bytes.Buffer
	if err := r.WritePlot(&buf); err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(&buf); err != nil || img.Bounds().Dx() < 500 {
		t.Fatalf("plot: %v, %v", err, img)
	}
}
