package windows

import (
	"slices"
	"strings"
	"testing"

	"github.com/Microsoft/hcsshim/osversion"

	"github.com/hyperpool/hyperpool/api/v1alpha1"
)

const (
	hyperV  = v1alpha1.IsolationHyperV
	process = v1alpha1.IsolationProcess
)

func TestParseBuildLabel(t *testing.T) {
	tests := []struct {
		value      string
		want       uint16
		wantErrHas string // empty: no error expected
	}{
		{value: "10.0.20348", want: osversion.LTSC2022},
		{value: "10.0.17763", want: osversion.LTSC2019},
		{value: "10.0.26100", want: osversion.LTSC2025},
		{value: "20348", want: osversion.LTSC2022},
		{value: "10.0.65535", want: 65535},
		{value: "", wantErrHas: `""`},
		{value: "windows", wantErrHas: `"windows"`},
		{value: "10.0", wantErrHas: "Major.Minor.Build"},
		{value: "10.0.20348.1", wantErrHas: "Major.Minor.Build"},
		{value: "10.x.20348", wantErrHas: "Major.Minor.Build"},
		{value: "10.0.", wantErrHas: "not a decimal number"},
		{value: "10.0.-1", wantErrHas: "not a decimal number"},
		{value: "+20348", wantErrHas: "not a decimal number"},
		{value: " 20348", wantErrHas: "not a decimal number"},
		{value: "0x4f7c", wantErrHas: "not a decimal number"},
		{value: "10.0.65536", wantErrHas: "out of range"},
		{value: "0", wantErrHas: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			got, err := ParseBuildLabel(tt.value)
			if tt.wantErrHas != "" {
				if err == nil {
					t.Fatalf("ParseBuildLabel(%q) = %d, want an error containing %q", tt.value, got, tt.wantErrHas)
				}
				if !strings.Contains(err.Error(), tt.wantErrHas) || !strings.Contains(err.Error(), tt.value) {
					t.Fatalf("ParseBuildLabel(%q) error %q, want it to name the value and contain %q", tt.value, err, tt.wantErrHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseBuildLabel(%q) = %d, %v; want %d, nil", tt.value, got, err, tt.want)
			}
		})
	}
}

func TestFormatBuildLabel(t *testing.T) {
	tests := []struct {
		build uint16
		want  string
	}{
		{build: osversion.LTSC2019, want: "10.0.17763"},
		{build: osversion.LTSC2022, want: "10.0.20348"},
		{build: osversion.LTSC2025, want: "10.0.26100"},
	}
	for _, tt := range tests {
		if got := FormatBuildLabel(tt.build); got != tt.want {
			t.Errorf("FormatBuildLabel(%d) = %q, want %q", tt.build, got, tt.want)
		}
		if back, err := ParseBuildLabel(tt.want); err != nil || back != tt.build {
			t.Errorf("ParseBuildLabel(%q) = %d, %v; want %d", tt.want, back, err, tt.build)
		}
	}
}

func TestCanRun(t *testing.T) {
	tests := []struct {
		name       string
		isolation  v1alpha1.IsolationMode
		imageBuild uint16
		hostBuild  uint16
		want       bool
	}{
		{"hyperv same build", hyperV, osversion.LTSC2022, osversion.LTSC2022, true},
		{"hyperv newer host", hyperV, osversion.LTSC2019, osversion.LTSC2022, true},
		{"hyperv older host", hyperV, osversion.LTSC2025, osversion.LTSC2022, false},
		{"hyperv unknown future host", hyperV, osversion.LTSC2025, 30000, true},
		{"empty isolation is the API default hyperv", "", osversion.LTSC2019, osversion.LTSC2025, true},
		{"process same build 2019", process, osversion.LTSC2019, osversion.LTSC2019, true},
		{"process same build 2025", process, osversion.LTSC2025, osversion.LTSC2025, true},
		{"process 2019 image on 2022 host", process, osversion.LTSC2019, osversion.LTSC2022, false},
		{"process 2022 image on 2025 host", process, osversion.LTSC2022, osversion.LTSC2025, true},
		{"process 2022 image on win11 22000 host", process, osversion.LTSC2022, osversion.V21H2Win11, true},
		{"process 2022 image on win11 22621 host", process, osversion.LTSC2022, osversion.V22H2Win11, true},
		{"process 23H2 image on 2025 host", process, osversion.V23H2, osversion.LTSC2025, true},
		{"process 2019 image on 2025 host", process, osversion.LTSC2019, osversion.LTSC2025, false},
		{"process 2025 image on 2022 host", process, osversion.LTSC2025, osversion.LTSC2022, false},
		{"process 22621 image on 22000 host", process, osversion.V22H2Win11, osversion.V21H2Win11, false},
		{"process 2022 image on 2019 host", process, osversion.LTSC2022, osversion.LTSC2019, false},
		{"process 19H1 image on 19H2 host", process, osversion.V19H1, osversion.V19H2, false},
		{"process 2022 image on future 30000 host", process, osversion.LTSC2022, 30000, false},
		{"process 2025 image on future 30000 host", process, osversion.LTSC2025, 30000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CanRun(tt.isolation, tt.imageBuild, tt.hostBuild); got != tt.want {
				t.Errorf("CanRun(%q, image %d, host %d) = %v, want %v", tt.isolation, tt.imageBuild, tt.hostBuild, got, tt.want)
			}
		})
	}
}

func TestCompatibleHostBuilds(t *testing.T) {
	tests := []struct {
		name       string
		isolation  v1alpha1.IsolationMode
		imageBuild uint16
		seen       []uint16
		want       []uint16
	}{
		{
			name: "hyperv 2019 image runs on every known build", isolation: hyperV, imageBuild: osversion.LTSC2019,
			want: knownHostBuilds,
		},
		{
			name: "hyperv 2022 image, seen future build and duplicates", isolation: hyperV, imageBuild: osversion.LTSC2022,
			seen: []uint16{30000, osversion.LTSC2025, osversion.LTSC2019, 30000},
			want: []uint16{osversion.LTSC2022, osversion.V21H2Win11, osversion.V22H2Win11, osversion.V23H2, osversion.LTSC2025, 30000},
		},
		{
			name: "process 2019 image runs only on 2019", isolation: process, imageBuild: osversion.LTSC2019,
			seen: []uint16{osversion.LTSC2022, osversion.LTSC2025},
			want: []uint16{osversion.LTSC2019},
		},
		{
			name: "process 2022 image runs on 2022 and newer up to the next LTSC", isolation: process, imageBuild: osversion.LTSC2022,
			seen: []uint16{30000},
			want: []uint16{osversion.LTSC2022, osversion.V21H2Win11, osversion.V22H2Win11, osversion.V23H2, osversion.LTSC2025},
		},
		{
			name: "process 2025 image", isolation: process, imageBuild: osversion.LTSC2025,
			seen: []uint16{30000, osversion.LTSC2022},
			want: []uint16{osversion.LTSC2025, 30000},
		},
		{
			name: "hyperv image newer than any known or seen host still lists its own build", isolation: hyperV, imageBuild: 30000,
			want: []uint16{30000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seenBefore := slices.Clone(tt.seen)
			got := CompatibleHostBuilds(tt.isolation, tt.imageBuild, tt.seen)
			if !slices.Equal(got, tt.want) {
				t.Errorf("CompatibleHostBuilds(%q, %d, %v) = %v, want %v", tt.isolation, tt.imageBuild, tt.seen, got, tt.want)
			}
			if !slices.Equal(tt.seen, seenBefore) {
				t.Errorf("CompatibleHostBuilds modified seen: %v, was %v", tt.seen, seenBefore)
			}
		})
	}
}

func TestKnownHostBuildsSorted(t *testing.T) {
	if !slices.IsSorted(knownHostBuilds) || !slices.IsSorted(ltscBuilds) {
		t.Fatalf("knownHostBuilds %v and ltscBuilds %v must be sorted ascending", knownHostBuilds, ltscBuilds)
	}
}

func FuzzCanRun(f *testing.F) {
	f.Add(true, uint16(osversion.LTSC2019), uint16(osversion.LTSC2022), uint16(30000))
	f.Add(false, uint16(osversion.LTSC2022), uint16(osversion.LTSC2025), uint16(0))
	f.Add(false, uint16(osversion.LTSC2025), uint16(30000), uint16(osversion.V21H2Win11))
	f.Fuzz(func(t *testing.T, useHyperV bool, imageBuild, hostBuild, seenBuild uint16) {
		isolation := process
		if useHyperV {
			isolation = hyperV
		}
		got := CanRun(isolation, imageBuild, hostBuild)
		if useHyperV && got != (hostBuild >= imageBuild) {
			t.Fatalf("HyperV: CanRun(image %d, host %d) = %v, want host >= image", imageBuild, hostBuild, got)
		}
		if !useHyperV {
			if imageBuild == hostBuild && !got {
				t.Fatalf("Process: CanRun(image %d, host %d) = false for the same build", imageBuild, hostBuild)
			}
			if imageBuild > hostBuild && got {
				t.Fatalf("Process: CanRun(image %d, host %d) = true for an image newer than the host", imageBuild, hostBuild)
			}
			if got && !CanRun(hyperV, imageBuild, hostBuild) {
				t.Fatalf("Process allows image %d on host %d but HyperV does not", imageBuild, hostBuild)
			}
		}

		builds := CompatibleHostBuilds(isolation, imageBuild, []uint16{hostBuild, seenBuild})
		if !slices.IsSorted(builds) || len(slices.Compact(slices.Clone(builds))) != len(builds) {
			t.Fatalf("CompatibleHostBuilds(%q, %d) = %v, not sorted and unique", isolation, imageBuild, builds)
		}
		for _, build := range builds {
			if !CanRun(isolation, imageBuild, build) {
				t.Fatalf("CompatibleHostBuilds(%q, %d) lists %d, which CanRun rejects", isolation, imageBuild, build)
			}
		}
		if slices.Contains(builds, hostBuild) != got {
			t.Fatalf("CompatibleHostBuilds(%q, %d, seen %d) = %v disagrees with CanRun = %v", isolation, imageBuild, hostBuild, builds, got)
		}
		if !slices.Contains(builds, imageBuild) {
			t.Fatalf("CompatibleHostBuilds(%q, %d) = %v lacks the image's own build", isolation, imageBuild, builds)
		}
	})
}
