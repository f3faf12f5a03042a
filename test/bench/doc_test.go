//go:build !windows

package bench

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperpool/hyperpool/test/results"
)

func TestTailShowsP99OnlyOverEnoughSamples(t *testing.T) {
	for _, tc := range []struct {
		s    Stats
		want string
	}{
		{Stats{}, "-"},
		{Stats{N: 199, P99: 40, Max: 55}, "max 55.0 (n=199)"},
		{Stats{N: 200, P99: 40, Max: 55}, "40.0"},
	} {
		if got := tail(tc.s); got != tc.want {
			t.Errorf("tail(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestFloorTableGivesGapsAndSaysWhenBindsBeatTheFloor(t *testing.T) {
	rep := &Report{Results: []*Result{
		{Scenario: "serial", Latency: Stats{N: 200, P50: 14, P99: 30, Max: 41},
			DesignFloor: &DesignFloorStats{Inline: true, Total: Stats{N: 200, P50: 12, P99: 25, Max: 33}}},
		{Scenario: "pool5000", Latency: Stats{N: 50, P50: 15, Max: 20},
			DesignFloor: &DesignFloorStats{Total: Stats{N: 300, P50: 16, P99: 22}}},
	}}
	got := floorTable(rep)
	for _, want := range []string{
		"| serial | interleaved, each from quiet | 200 | 200 | 14.0 | 12.0 | +2.0 ms (1.17×) | 30.0 | 25.0 | +5.0 ms (1.20×) |",
		"| pool5000 | next to the binds, every 250 ms | 50 | 300 | 15.0 | 16.0 | -1.0 ms (0.94×) | max 20.0 (n=50) | 22.0 | - (p99 on one side, max on the other) |",
		"**Binds beat the floor at p50 in pool5000 (by 1.0 ms).**",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("floor table lacks %q:\n%s", want, got)
		}
	}
}

func TestTargetsJudgeTheRun(t *testing.T) {
	rep := &Report{Results: []*Result{
		{Scenario: "serial", Params: "200 sessions", Warm: 200, Latency: Stats{N: 200, P50: 14, P99: 45}, CriticalPerBind: 2, TotalPerBind: 3.1},
		{Scenario: "burst", Params: "750 at 75/s", Warm: 50, Latency: Stats{N: 50, P50: 60, P99: 70, Max: 90}, CriticalPerBind: 2, TotalPerBind: 4.2, OverCreated: 1},
	}}
	got := targetsTable(rep)
	for _, want := range []string{
		"| warm bind p50 ≤ 15 ms, serial | p50 14.0 ms (200 sessions) | yes |",
		"| warm bind p99 ≤ 40 ms, serial | p99 45.0 ms (200 sessions) | **no** |",
		"| burst p99 ≤ 100 ms | max (n=50 < 200) 90.0 ms (750 at 75/s) | yes |",
		"| ≤ 4 writes in all per warm bind | 3.10–4.20 in the warm scenarios | **no** |",
		"| ≥ 300 binds/s | not in this run | - |",
		"| no pod over-created, none bound twice | 1 over-created, 0 double binds, over 2 scenarios | **no** |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("targets table lacks %q:\n%s", want, got)
		}
	}
}

func TestRenderDocReadsAKeptRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.json")
	rep := &Report{Results: []*Result{{Scenario: "serial", Params: "2 sessions", Sessions: 2, Bound: 2, Warm: 2, Latency: Stats{N: 2, P50: 10, Max: 12}}}}
	if err := results.Begin("bench").Write(path, rep); err != nil {
		t.Fatal(err)
	}
	got, err := RenderDoc([]string{"scenarios", path})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "| serial | 2 sessions | 2 of 2 (2 / 0) | 10.0 |") || !strings.Contains(got, "max 12.0 (n=2)") {
		t.Errorf("scenarios table:\n%s", got)
	}
	// A later run's scenario replaces the earlier one's.
	rerun := filepath.Join(t.TempDir(), "rerun.json")
	again := &Report{Results: []*Result{{Scenario: "serial", Params: "rerun", Sessions: 1, Bound: 1, Warm: 1, Latency: Stats{N: 1, P50: 9, Max: 9}}}}
	if err := results.Begin("bench").Write(rerun, again); err != nil {
		t.Fatal(err)
	}
	if got, err := RenderDoc([]string{"scenarios", path, rerun}); err != nil || strings.Contains(got, "2 sessions") || !strings.Contains(got, "| serial | rerun |") {
		t.Errorf("scenarios over two runs (%v):\n%s", err, got)
	}
	// repeats keeps every run of a scenario, one row each, in the order given.
	if got, err := RenderDoc([]string{"repeats", path, rerun}); err != nil || strings.Count(got, "| serial |") != 2 ||
		!strings.Contains(got, "| 10.0 |") || !strings.Contains(got, "| 9.0 |") {
		t.Errorf("repeats over two runs (%v):\n%s", err, got)
	}
	if _, err := RenderDoc([]string{"plot", path}); err == nil || !strings.Contains(err.Error(), `no bench table "plot"`) {
		t.Errorf("an unknown table: %v, want an error naming it", err)
	}
}
