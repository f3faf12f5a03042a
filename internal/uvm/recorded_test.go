package uvm

import (
	"strings"
	"testing"

	"github.com/Microsoft/hcsshim/pkg/annotations"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hyperpool/hyperpool/api/v1alpha1"
)

func TestFootprintRecordRoundTrip(t *testing.T) {
	for _, f := range []v1alpha1.Footprint{
		{Memory: resource.MustParse("1536Mi"), VCPUs: 2},
		{Memory: resource.MustParse("64Gi"), VCPUs: 16},
		{}, // process isolation: no VM
	} {
		text := FormatFootprint(f)
		got, err := ParseFootprint(text)
		if err != nil {
			t.Fatalf("ParseFootprint(%q): %v", text, err)
		}
		if got.Memory.Cmp(f.Memory) != 0 || got.VCPUs != f.VCPUs {
			t.Errorf("ParseFootprint(FormatFootprint(%+v)) = %+v", f, got)
		}
	}
	if got := FormatFootprint(v1alpha1.Footprint{Memory: resource.MustParse("1536Mi"), VCPUs: 2}); got != `{"memory":"1536Mi","vcpus":2}` {
		t.Errorf("FormatFootprint = %s", got)
	}
}

// TestRecordedFootprintRefusesWhatTheManagerNeverWrites: a missing, stripped or tampered
// record is not a footprint; the caller falls back to the class.
func TestRecordedFootprintRefusesWhatTheManagerNeverWrites(t *testing.T) {
	tests := []struct {
		name  string
		value *string // nil: no annotation
	}{
		{"missing", nil},
		{"empty", ptr("")},
		{"not JSON", ptr("1536Mi")},
		{"negative memory", ptr(`{"memory":"-1Gi","vcpus":2}`)},
		{"negative vcpus", ptr(`{"memory":"1Gi","vcpus":-2}`)},
		{"bad quantity", ptr(`{"memory":"lots","vcpus":2}`)},
		{"too long", ptr(`{"memory":"1Gi","vcpus":2,"pad":"` + strings.Repeat("x", 300) + `"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
				annotations.MemorySizeInMB: "1536", annotations.ProcessorCount: "2"}}}
			if tt.value != nil {
				pod.Annotations[FootprintAnnotation] = *tt.value
			}
			if f, ok := RecordedFootprint(pod); ok {
				t.Errorf("RecordedFootprint = %+v, ok; want not ok", f)
			}
		})
	}
	if _, ok := RecordedFootprint(nil); ok {
		t.Error("RecordedFootprint(nil) ok")
	}
}

func TestMaxFootprint(t *testing.T) {
	a := v1alpha1.Footprint{Memory: resource.MustParse("2Gi"), VCPUs: 1}
	b := v1alpha1.Footprint{Memory: resource.MustParse("1536Mi"), VCPUs: 4}
	assertFootprint(t, "MaxFootprint(a, b)", MaxFootprint(a, b), "2Gi", 4)
	assertFootprint(t, "MaxFootprint(b, a)", MaxFootprint(b, a), "2Gi", 4)
	assertFootprint(t, "MaxFootprint(zero, b)", MaxFootprint(v1alpha1.Footprint{}, b), "1536Mi", 4)
}
