// Package version holds the release version and source revision stamped into every
// hyperpool binary at link time. The one source of the version is appVersion in
// charts/hyperpool/Chart.yaml: the Makefile reads it and passes it here with
//
//	go build -ldflags "-X github.com/hyperpool/hyperpool/internal/version.Version=$(VERSION) \
//	                   -X github.com/hyperpool/hyperpool/internal/version.Revision=$(REVISION)"
//
// so the binaries, the image tags, the chart and the CRD bundle of a release cannot disagree
// (make verify checks the files; test/images checks the binary inside the image).
package version

import "fmt"

// Version is the release version, e.g. "0.1.0". A plain `go build` leaves "dev": such a
// binary was not built by `make`, and says so.
var Version = "dev"

// Revision is the git commit the binary was built from, or "unknown".
var Revision = "unknown"

// String is what `--version` prints: the program, the version and the revision, on one line,
// for instance "hyperpool-manager 0.1.0 (revision 17c450f)".
func String(program string) string {
	return fmt.Sprintf("%s %s (revision %s)", program, Version, Revision)
}
