// Package windows decides which Windows nodes can run a sandbox image, from the image's
// Windows build, the node's build and the isolation mode.
//
// A mismatch only shows up late, on the node, as "The container operating system does not
// match the host operating system"; hyperpool uses these rules to catch it before a pod is
// created, and to pin pods to compatible nodes through node affinity on BuildLabel.
//
// hcsshim's osversion package gives the build numbers but its compatibility check only
// compiles on Windows, so the rule is implemented here, as pure functions.
package windows

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/Microsoft/hcsshim/osversion"

	"github.com/hyperpool/hyperpool/api/v1alpha1"
)

// BuildLabel is the node label the kubelet sets to the node's Windows version as
// Major.Minor.Build, e.g. 10.0.20348. Pods are pinned to compatible builds through it.
const BuildLabel = "node.kubernetes.io/windows-build"

// windowsMajorMinor is the Major.Minor prefix of every Windows build hyperpool supports
// (Windows 10, Windows 11 and Windows Server 2016 on all report 10.0).
const windowsMajorMinor = "10.0"

// ltscBuilds are the Windows Server long-term servicing channel releases, oldest first.
// Process isolation on a host newer than Server 2022 also accepts images of the previous
// LTSC, so the rule needs to know which builds are LTSC releases.
var ltscBuilds = []uint16{
	osversion.LTSC2016,
	osversion.LTSC2019,
	osversion.LTSC2022,
	osversion.LTSC2025,
}

// knownHostBuilds are the Windows Server and client builds a container host can run, from
// Server 2019 (RS5) on: older hosts are out of support and below what the API accepts as an
// image build. Sorted ascending. Builds newer than hcsshim knows come from the nodes
// themselves (the seen argument of CompatibleHostBuilds).
var knownHostBuilds = []uint16{
	osversion.RS5,
	osversion.V19H1,
	osversion.V19H2,
	osversion.V20H1,
	osversion.V20H2,
	osversion.V21H1,
	osversion.V21H2Win10,
	osversion.V22H2Win10,
	osversion.LTSC2022,
	osversion.V21H2Win11,
	osversion.V22H2Win11,
	osversion.V23H2,
	osversion.LTSC2025,
}

// ParseBuildLabel returns the build number of a BuildLabel value: 20348 for "10.0.20348".
// A bare build number ("20348") is accepted too, so the same parser serves values written
// by people (flags, annotations) as well as by the kubelet.
func ParseBuildLabel(value string) (uint16, error) {
	buildText := value
	if parts := strings.Split(value, "."); len(parts) != 1 {
		if len(parts) != 3 || !isDecimal(parts[0]) || !isDecimal(parts[1]) {
			return 0, fmt.Errorf("windows build %q is not of the form Major.Minor.Build; "+
				"use the node's %s label value, e.g. %s, or a bare build number, e.g. %d",
				value, BuildLabel, FormatBuildLabel(osversion.LTSC2022), osversion.LTSC2022)
		}
		buildText = parts[2]
	}
	if !isDecimal(buildText) {
		return 0, fmt.Errorf("windows build %q: build %q is not a decimal number; "+
			"use e.g. %s or %d", value, buildText, FormatBuildLabel(osversion.LTSC2022), osversion.LTSC2022)
	}
	build, err := strconv.ParseUint(buildText, 10, 16)
	if err != nil || build == 0 {
		return 0, fmt.Errorf("windows build %q: build %q is out of range 1-65535; "+
			"use a Windows build number, e.g. %d (Server 2019), %d (Server 2022) or %d (Server 2025)",
			value, buildText, osversion.LTSC2019, osversion.LTSC2022, osversion.LTSC2025)
	}
	return uint16(build), nil
}

// isDecimal reports whether s is a non-empty run of ASCII digits. strconv alone would also
// accept signs and, with base 0, prefixes such as 0x, which are not label values.
func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// FormatBuildLabel returns the BuildLabel value of a build: "10.0.20348" for 20348, the form
// the kubelet writes and node affinity must match exactly.
func FormatBuildLabel(build uint16) string {
	return windowsMajorMinor + "." + strconv.FormatUint(uint64(build), 10)
}

// CanRun reports whether a host of build hostBuild can run a container image of build
// imageBuild with the given isolation.
//
// Hyper-V isolation (the API default, also assumed for an empty isolation) boots the image's
// own kernel in a utility VM, so any host of the same or a newer build runs it; a host older
// than the image cannot.
//
// Process isolation shares the host kernel, so the builds must match. Windows relaxes this
// from Server 2022 on: a host newer than LTSC2022 also runs images from the previous LTSC
// (the largest LTSC build strictly below the host's) up to its own build, provided the image
// is LTSC2022 or newer. So a 26100 (Server 2025) host runs 20348..26100 images, a 22000
// (Windows 11) host runs 20348..22000, but a 20348 host runs only 20348: 17763 images
// never run process-isolated on a different build.
func CanRun(isolation v1alpha1.IsolationMode, imageBuild, hostBuild uint16) bool {
	if isolation != v1alpha1.IsolationProcess {
		return hostBuild >= imageBuild
	}
	if imageBuild == hostBuild {
		return true
	}
	if hostBuild <= osversion.LTSC2022 || imageBuild > hostBuild || imageBuild < osversion.LTSC2022 {
		return false
	}
	previous, ok := previousLTSC(hostBuild)
	return ok && imageBuild >= previous
}

// previousLTSC returns the largest LTSC build strictly below build, and false when build is
// not newer than any LTSC release.
func previousLTSC(build uint16) (uint16, bool) {
	for i := len(ltscBuilds) - 1; i >= 0; i-- {
		if ltscBuilds[i] < build {
			return ltscBuilds[i], true
		}
	}
	return 0, false
}

// CompatibleHostBuilds returns the host builds, sorted ascending and without duplicates,
// that can run an image of imageBuild with the given isolation (see CanRun). Candidates are
// the Windows Server and client builds hcsshim knows from RS5 (17763) on, the builds in seen
// (observed on nodes, possibly newer than hcsshim knows) and imageBuild itself, since a host
// of the image's own build always runs it: that keeps the list non-empty for a build no
// node has reported yet. Callers turn the result into a node-affinity In list of
// FormatBuildLabel values.
func CompatibleHostBuilds(isolation v1alpha1.IsolationMode, imageBuild uint16, seen []uint16) []uint16 {
	candidates := make([]uint16, 0, len(knownHostBuilds)+len(seen)+1)
	candidates = append(candidates, knownHostBuilds...)
	candidates = append(candidates, seen...)
	candidates = append(candidates, imageBuild)
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	return slices.DeleteFunc(candidates, func(host uint16) bool {
		return !CanRun(isolation, imageBuild, host)
	})
}
