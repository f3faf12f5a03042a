package runtimereport

import (
	"os"
	"strings"
	"testing"
)

// The containerd configuration hyperpool ships (config/containerd, quoted in
// docs/install.md) passes its own check: every handler registered, Hyper-V isolated and
// passing the sizing annotations.
func TestShippedContainerdSnippetPassesTheCheck(t *testing.T) {
	t.Parallel()
	snippet, err := os.ReadFile("../../config/containerd/hyperv-runtimes.toml")
	if err != nil {
		t.Fatal(err)
	}
	r := Check(snippet, []string{"runhcs-wcow-hypervisor", "runhcs-wcow-hypervisor-20348"})
	if r.Error != "" || r.ConfigVersion != 3 {
		t.Fatalf("Check: version %d, error %q", r.ConfigVersion, r.Error)
	}
	for _, h := range r.Handlers {
		if !h.Ready() {
			t.Errorf("handler %s: %s (%s)", h.Handler, h.Problem(), h.Detail)
		}
	}
	install, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(install), string(snippet)) {
		t.Error("docs/install.md does not quote config/containerd/hyperv-runtimes.toml as it is; paste the file into its containerd section")
	}
}
