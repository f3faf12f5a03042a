package uvm

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestSizeApplied(t *testing.T) {
	for _, tc := range []struct {
		requested, assigned int64
		want                bool
	}{
		{1536, 1536, true},
		{1537, 1538, true},  // hcsshim aligns an odd size up to 2 MB
		{1537, 1537, false}, // not what hcsshim configures
		{1536, 1538, false},
		{1536, 1534, false},
		{1536, 1535, false},
		{1536, 1024, false}, // hcsshim's default: the annotation did not reach the shim
		{4096, 1024, false},
	} {
		if got := SizeApplied(tc.requested, tc.assigned); got != tc.want {
			t.Errorf("SizeApplied(%d, %d) = %t, want %t", tc.requested, tc.assigned, got, tc.want)
		}
	}
	if got := AssignedMiB(393216 * 4096); got != 1536 { // HCS reports 4 KiB pages
		t.Errorf("AssignedMiB(1536 MiB of pages) = %d", got)
	}
}

func TestRequestedMiB(t *testing.T) {
	for value, want := range map[string]int64{"1536": 1536, "0": 0, "-1": 0, "1.5Gi": 0, "": 0} {
		got, ok := RequestedMiB(map[string]string{"io.microsoft.virtualmachine.computetopology.memory.sizeinmb": value})
		if got != want || ok != (want > 0) {
			t.Errorf("RequestedMiB(%q) = %d, %t; want %d", value, got, ok, want)
		}
	}
	if _, ok := RequestedMiB(nil); ok {
		t.Error("RequestedMiB without the annotation")
	}
}

func TestSizeReportsRoundTrip(t *testing.T) {
	reports := []SizeReport{
		{Namespace: "b", Sandbox: "x", RequestedMiB: 1536, AssignedMiB: 1024, VMs: 2},
		{Namespace: "a", Sandbox: "y", RequestedMiB: 2048, AssignedMiB: 2048, VMs: 1},
	}
	value := FormatSizeReports(reports)
	if !strings.HasPrefix(value, `[{"namespace":"a"`) {
		t.Errorf("not sorted: %s", value)
	}
	got, err := ParseSizeReports(value)
	if err != nil || !slices.Equal(got, []SizeReport{reports[1], reports[0]}) {
		t.Errorf("round trip = %+v, %v", got, err)
	}
	if FormatSizeReports(nil) != "" {
		t.Error("no reports should be no annotation")
	}
	if got, err := ParseSizeReports(""); got != nil || err != nil {
		t.Errorf("empty = %v, %v", got, err)
	}
	if _, err := ParseSizeReports("{"); err == nil || !strings.Contains(err.Error(), SizesAnnotation) {
		t.Errorf("bad JSON: %v", err)
	}
}

// A node with more reports than the annotation holds keeps every mismatch.
func TestSizeReportsBoundedKeepMismatches(t *testing.T) {
	var reports []SizeReport
	for i := range maxSizeReports + 10 {
		reports = append(reports, SizeReport{Namespace: "a", Sandbox: fmt.Sprintf("s%03d", i), RequestedMiB: 1024, AssignedMiB: 1024, VMs: 1})
	}
	reports = append(reports, SizeReport{Namespace: "z", Sandbox: "last", RequestedMiB: 1536, AssignedMiB: 1024, VMs: 1})
	got, err := ParseSizeReports(FormatSizeReports(reports))
	if err != nil || len(got) != maxSizeReports || !slices.ContainsFunc(got, func(r SizeReport) bool { return !r.Applied() }) {
		t.Errorf("bounded: %d reports, err %v, mismatch kept: %t", len(got), err, slices.ContainsFunc(got, func(r SizeReport) bool { return !r.Applied() }))
	}
}
