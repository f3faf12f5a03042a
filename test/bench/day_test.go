//go:build !windows

package bench

import (
	"bytes"
	"image/png"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// dayFixture is a kept run of two made-up days (testdata/day.json): a ladder of fixed
// pools of 1, 2, 4 and 6, autoscalers at 0.9 and 0.99, a 60 s refill, 60 sessions an hour
// at the peak and 12 on average.
const dayFixture = "testdata/day.json"

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

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Spread
		text string
	}{
		{"none", nil, Spread{}, "–"},
		{"one seed is its value", []float64{0.5}, Spread{Mean: 0.5, Min: 0.5, Max: 0.5, N: 1}, "50 %"},
		{"mean, min and max", []float64{0.2, 0.6, 0.4}, Spread{Mean: 0.4, Min: 0.2, Max: 0.6, N: 3}, "40 % (20 %–60 %)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SpreadOf(tc.in)
			if got.N != tc.want.N || math.Abs(got.Mean-tc.want.Mean) > 1e-9 || got.Min != tc.want.Min || got.Max != tc.want.Max {
				t.Errorf("SpreadOf(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
			if s := got.format(pct0); s != tc.text {
				t.Errorf("format = %q, want %q", s, tc.text)
			}
		})
	}
}

func TestBestFixedAt(t *testing.T) {
	fixed := func(n int32, warm, idle float64) DayPool {
		return DayPool{Name: fixedPoolName(n), Replicas: n, WarmHitRatio: warm, IdleGBHours: idle}
	}
	ladder := []DayPool{fixed(1, 0.8, 20), fixed(2, 0.93, 45), fixed(4, 0.985, 95), fixed(6, 1, 140),
		{Name: "auto-0.9", Target: 0.9, WarmHitRatio: 1, IdleGBHours: 1}}
	for _, tc := range []struct {
		name    string
		pools   []DayPool
		warm    float64
		want    int32
		reached bool
	}{
		{"the smallest pool at or above the warm hits", ladder, 0.95, 4, true},
		{"an equal ratio counts", ladder, 0.93, 2, true},
		{"every pool reaches zero: the cheapest", ladder, 0, 1, true},
		{"none of the ladder reaches it; autoscaled pools are no candidates", ladder[:3], 0.99, 0, false},
		{"the cheapest, not the smallest, when a larger pool held less (a noisy day)",
			[]DayPool{fixed(3, 0.99, 70), fixed(4, 0.99, 65)}, 0.98, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := BestFixedAt(tc.pools, tc.warm)
			if ok != tc.reached || got.Replicas != tc.want {
				t.Errorf("BestFixedAt(%.3f) = %s (%v), want fixed-%d (%v)", tc.warm, got.Name, ok, tc.want, tc.reached)
			}
		})
	}
}

// TestDaySizing: fixed-peak and fixed-average are picked from the ladder with the day's
// measured refill and the autoscaler's model (Erlang B).
func TestDaySizing(t *testing.T) {
	d := DaySeed{RefillP90: time.Minute, Pools: []DayPool{{Replicas: 1}, {Replicas: 2}, {Replicas: 4}, {Replicas: 6}, {Target: 0.99}}}
	for _, tc := range []struct {
		name          string
		perHour       float64
		need, fromLad int32
	}{
		{"load 1: 5 sandboxes for 99 %, the ladder's 6", 60, 5, 6},
		{"load 0.2: 3, the ladder's 4", 12, 3, 4},
		{"no load: none needed, the smallest", 0, 0, 1},
		{"beyond the ladder: its largest", 600, 18, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			need := d.SizeFor(tc.perHour, 0.99)
			if need != tc.need {
				t.Errorf("SizeFor(%v/h) = %d, want %d", tc.perHour, need, tc.need)
			}
			if got := d.PoolFor(need).Replicas; got != tc.fromLad {
				t.Errorf("PoolFor(%d) = %d, want %d", need, got, tc.fromLad)
			}
		})
	}
}

// TestDayVersusTargets: each target against the cheapest fixed pool of the same seed at
// equal or better warm hits, and the seeds where none reached it.
func TestDayVersusTargets(t *testing.T) {
	run := &DayRun{}
	if _, err := readDayRun(dayFixture, run); err != nil {
		t.Fatal(err)
	}
	got := DayVersusTargets(run)
	for i, tc := range []struct {
		target            float64
		best              string
		compared, cheaper int
		ratio             Spread
	}{
		// 30/95 and 35/46
		{0.9, "4, 2", 2, 2, Spread{Mean: (30.0/95 + 35.0/46) / 2, Min: 30.0 / 95, Max: 35.0 / 46, N: 2}},
		// seed 17's autoscaler served all: no fixed pool of the ladder did
		{0.99, "6, none (6: 99.50 %)", 1, 1, Spread{Mean: 60.0 / 140, Min: 60.0 / 140, Max: 60.0 / 140, N: 1}},
	} {
		v := got[i]
		if v.Target != tc.target || v.bestFixed() != tc.best || v.Compared != tc.compared || v.Cheaper != tc.cheaper ||
			v.Ratio.N != tc.ratio.N || math.Abs(v.Ratio.Mean-tc.ratio.Mean) > 1e-9 || math.Abs(v.Ratio.Min-tc.ratio.Min) > 1e-9 {
			t.Errorf("target %v: best %q, compared %d, cheaper %d, ratio %+v; want %q, %d, %d, %+v",
				v.Target, v.bestFixed(), v.Compared, v.Cheaper, v.Ratio, tc.best, tc.compared, tc.cheaper, tc.ratio)
		}
	}
}

// TestDayVersusBeyondTheLadder: an autoscaler with more warm hits than every fixed pool
// and less idle memory than the closest is counted as better on both.
func TestDayVersusBeyondTheLadder(t *testing.T) {
	for _, tc := range []struct {
		name       string
		autoIdle   float64
		wantBeyond int
	}{
		{"less idle memory than the closest pool", 30, 1},
		{"more idle memory than the closest pool", 60, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := &DayRun{Options: DayOptions{Targets: []float64{0.99}}, Seeds: []DaySeed{{Seed: 1, Pools: []DayPool{
				{Name: "fixed-2", Replicas: 2, WarmHitRatio: 0.7, IdleGBHours: 20},
				{Name: "fixed-4", Replicas: 4, WarmHitRatio: 0.8, IdleGBHours: 50},
				{Name: "auto-0.99", Target: 0.99, WarmHitRatio: 0.9, IdleGBHours: tc.autoIdle}}}}}
			v := DayVersusTargets(run)[0]
			if v.Compared != 0 || v.Beyond != tc.wantBeyond || v.bestFixed() != "none (4: 80.00 %)" {
				t.Errorf("compared %d, beyond %d, best %q; want 0, %d, %q", v.Compared, v.Beyond, v.bestFixed(), tc.wantBeyond, "none (4: 80.00 %)")
			}
		})
	}
}

// TestRenderDayDoc renders each of the page's tables from the fixture.
func TestRenderDayDoc(t *testing.T) {
	for _, tc := range []struct {
		table string
		want  []string
	}{
		{"header", []string{"commit 0123456", "2 seeds (16, 17)", "replayed in 6m0s (240 times faster)", "fixed pools of 1, 2, 4, 6",
			"warmHitTarget 0.9, 0.99", "VM boot 45s (kwok's ready delay, scaled: 188ms real)", "refill measured (p90, simulated) 60 to 60 s", "1-minute load 1.50 before and 3.25 after", "`day -seeds=16,17`"}},
		{"seeds", []string{"| 16 | 200 | 60 / 12.0 | 60 s | 6 (needs 5) / 4 (needs 3) | 15 / 150 | 2.50 |"}},
		{"policies", []string{"Mean over 2 seeds", "| fixed-peak | 6 warm | 99.75 % (99.50 %–100.00 %) | 139.5 (139.0–140.0) | 100 % (100 %–100 %) |",
			"| fixed-average | 4 warm | 98.25 % (98.00 %–98.50 %) | 94.5 (94.0–95.0) | 68 % (68 %–68 %) |",
			"| auto-0.9 | `spec.autoscaling` | 93.00 % (91.00 %–95.00 %) | 32.5 (30.0–35.0) | 23 % (21 %–25 %) |"}},
		{"versus", []string{"| warmHitTarget 0.9 | 93.00 % (91.00 %–95.00 %) | 32.5 (30.0–35.0) | 4, 2 | 70.5 (46.0–95.0) | 54 % (32 %–76 %) | 2 of 2 seeds |",
			"| warmHitTarget 0.99 | 99.75 % (99.50 %–100.00 %) | 105.0 (60.0–150.0) | 6, none (6: 99.50 %) | 140.0 | 43 % | 1 of 1 seeds |", "(1 of 4 comparisons;", "In 0 of those 1, the autoscaler also held less idle memory"}},
		{"curve", []string{"| fixed-1 | 79.00 % (78.00 %–80.00 %) | 20.5 (20.0–21.0) | 12 (12–12) |", "| auto-0.99 |"}},
	} {
		t.Run(tc.table, func(t *testing.T) {
			got, err := RenderDayDoc([]string{tc.table, dayFixture})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
		})
	}
	for _, args := range [][]string{nil, {"policies"}, {"nosuchtable", dayFixture}, {"policies", "testdata/missing.json"}} {
		if _, err := RenderDayDoc(args); err == nil {
			t.Errorf("RenderDayDoc(%q) did not fail", args)
		}
	}
}

// TestDayPlot: the cost curve renders from the kept file alone.
func TestDayPlot(t *testing.T) {
	run := &DayRun{}
	if _, err := readDayRun(dayFixture, run); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := run.WritePlot(&buf); err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(&buf); err != nil || img.Bounds().Dx() < 500 {
		t.Fatalf("plot: %v, %v", err, img)
	}
}

func TestParseDayList(t *testing.T) {
	if got, err := ParseDayList[uint64]("16, 17,18"); err != nil || !slices.Equal(got, []uint64{16, 17, 18}) {
		t.Errorf("seeds: %v, %v", got, err)
	}
	if got, err := ParseDayList[float64]("0.9,0.95"); err != nil || !slices.Equal(got, []float64{0.9, 0.95}) {
		t.Errorf("targets: %v, %v", got, err)
	}
	for _, bad := range []string{"", "1,x", "-1"} {
		if _, err := ParseDayList[uint64](bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
