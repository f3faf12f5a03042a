package windows

import (
	"testing"

	"github.com/Microsoft/hcsshim/osversion"
)

// On Windows, where hcsshim's own rule compiles, CanRun for process isolation must agree
// with osversion.CheckHostAndContainerCompat on every pair of builds hyperpool knows, plus a
// future one. make test vets this file for GOOS=windows; it runs on a Windows machine only.
func TestProcessIsolationAgreesWithHcsshim(t *testing.T) {
	builds := append(append([]uint16{}, knownHostBuilds...), osversion.LTSC2016, 30000)
	for _, host := range builds {
		for _, image := range builds {
			want := osversion.CheckHostAndContainerCompat(
				osversion.OSVersion{MajorVersion: 10, Build: host}, osversion.OSVersion{MajorVersion: 10, Build: image})
			if got := CanRun(process, image, host); got != want {
				t.Errorf("CanRun(Process, image %d, host %d) = %t, hcsshim says %t", image, host, got, want)
			}
		}
	}
}
