package windows

import (
	"fmt"
	"testing"

	"github.com/Microsoft/hcsshim/osversion"
)

// The Windows Server 2025 (26100) rows of the compatibility table, every pair of the three
// supported LTSC builds under both isolations. Process isolation follows hcsshim v0.15.0
// osversion.CheckHostAndContainerCompat (platform_compat_windows.go): a host older than
// 20348 runs only its own build; from 20348 on, a host runs images from the previous LTSC
// (compatLTSCReleases: 20348, 26100) up to its own build. Hyper-V isolation boots the
// image's own kernel, so a host runs any image of its build or older; hcsshim has no check
// of its own for it (Microsoft's version-compatibility matrix).
func TestServer2025Table(t *testing.T) {
	const (
		ws2019 = osversion.LTSC2019 // 17763
		ws2022 = osversion.LTSC2022 // 20348
		ws2025 = osversion.LTSC2025 // 26100
	)
	tests := []struct {
		image, host     uint16
		hyperV, process bool
	}{
		{ws2019, ws2025, true, false},
		{ws2022, ws2025, true, true}, // the previous LTSC runs process-isolated on 2025
		{ws2025, ws2025, true, true},
		{ws2025, ws2022, false, false}, // never an image newer than its host
		{ws2025, ws2019, false, false},
		{ws2022, ws2022, true, true},
		{ws2019, ws2022, true, false}, // 2022 hosts take only their own build process-isolated
		{ws2022, ws2019, false, false},
		{ws2019, ws2019, true, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("image %d on host %d", tc.image, tc.host), func(t *testing.T) {
			if got := CanRun(hyperV, tc.image, tc.host); got != tc.hyperV {
				t.Errorf("HyperV: %t, want %t", got, tc.hyperV)
			}
			if got := CanRun(process, tc.image, tc.host); got != tc.process {
				t.Errorf("Process: %t, want %t", got, tc.process)
			}
		})
	}
}
